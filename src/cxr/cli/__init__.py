"""The `cxr` command: look at raw data before a model learns from it, switch and check params, predict with
trained models, and report what a branch changed.

    cxr inspect PATH [PATH ...] [--json]   what the index stage will find in a folder or zip, and what sources share
    cxr preset NAME [--set KEY=VALUE ...]   apply presets/NAME.yaml (dotted keys) to params.yaml, only those keys changed
    cxr check                               params.yaml as a whole pipeline: every name one section gives another exists
    cxr pr-report [--base REV] [--out DIR]  params, metrics and plots changed against REV, as DIR/report.md
    cxr predict PATH [PATH ...] --model NAME [--json] [--explain DIR]   a trained model on images, folders, zips
    cxr docs [--check]                      copy the run's tables from reports/summary.md into README.md and docs/
    cxr experiments [--run GLOB] [--sort-by SCORE]   every commit and experiment x run, headline scores, best first
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from cxr.data.params import Layout
from cxr.params import PARAMS_FILE
from cxr.paths import PipelineFileError, optional_stage_path, stage_path
from cxr.report.headline import TITLES


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command with its description, example and options."""
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 done, 1 failed (the message names the file or key and the "
                                            "fix), 2 a usage error. `cxr COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, example: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=kwargs.pop("description", help[0].upper() + help[1:] + "."),
                                   epilog=f"Example:\n  {example}" + (f"\n\n{kwargs.pop('epilog')}" if "epilog" in kwargs else ""),
                                   formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    inspect = command("inspect", "inspect raw datasets (folders or zips) without writing anything",
                      "cxr inspect data/raw/COVID-19_Radiography_Dataset.zip")
    inspect.add_argument("paths", nargs="+", type=Path, help="dataset folders or zip archives, as downloaded")
    inspect.add_argument("--json", action="store_true",
                         help="the full reports as strict JSON, alone on stdout (progress and warnings: stderr)")
    inspect.add_argument("--layout", choices=LAYOUT_CHOICES,
                         help="force a layout instead of detecting it (default: the configured "
                              "source's when params.yaml names the path, else auto)")
    inspect.add_argument("--class-map", action="append", default=[], metavar="RAW=CLASS",
                         help="map a raw class folder to a class (RAW= or RAW=null drops it); repeatable, over "
                              "source.<name>.class_map of params.yaml when the path is a configured source's")
    inspect.add_argument("--workers", type=int, default=0, help="decoding processes (0: one per core)")

    preset = command("preset", "apply a params preset from presets/ to params.yaml",
                     "cxr preset radiography --set source.radiography.path=data/raw/radiography.zip")
    preset.add_argument("name", nargs="?", help="preset name (a file presets/<name>.yaml); omit to list them")
    preset.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="one more dotted key to set, e.g. source.radiography.path=data/raw/x.zip")

    command("check", "check params.yaml as a whole pipeline: valid sections, no name pointing nowhere", "cxr check")

    report = command("pr-report", "what this branch did to params, metrics and plots, as markdown",
                     "cxr pr-report --base main --out pr-report")
    report.add_argument("--base", default="main", help="the revision to compare with (default: main)")
    report.add_argument("--out", type=Path, default=Path("pr-report"), help="folder to (re)write (default: pr-report)")
    report.add_argument("--plots-url", help="link the figures to this page instead of showing them (a PR comment)")

    predict = command("predict", "class probabilities of X-ray files (PNG, JPEG, DICOM), folders or zips",
                      "cxr predict films/ --model resnet18-full --explain maps/",
                      epilog="A folder or zip in a known dataset layout gives its films only: its lung masks "
                                         "are skipped and its metadata sheets ignored, both counted. A film the tool's "
                                         "own checks call implausible (a constant image, a lung mask that fails the "
                                         "anatomical checks) abstains: no class, with the reason. Exit status: 0 when "
                                         "every file was read (abstentions included), 1 when any file failed, 2 when "
                                         "the model or segmenter cannot be used.")
    predict.add_argument("inputs", nargs="+", type=Path, help="image files, folders (a dataset's too) or zip archives")
    predict.add_argument("--model", required=True,
                         help="registry name (resnet18-full), <dataset>/<model> (full/resnet18) or a checkpoint path")
    predict.add_argument("--json", action="store_true",
                         help="the predictions as strict JSON, alone on stdout (progress and warnings: stderr)")
    predict.add_argument("--explain", type=Path, metavar="DIR", help="write a Grad-CAM and saliency figure per image to DIR")
    segmenter = optional_stage_path("segment_train", "--checkpoint")
    predict.add_argument("--segmenter", type=Path, help="lung segmenter checkpoint (default: " + (
        f"{segmenter}, which the pipeline trains, when present)" if segmenter else
        "the one a checkout's pipeline trains, run in its root folder; none here)"))
    predict.add_argument("--no-segmenter", action="store_true", help="full-view models: skip the lung segmentation check")
    predict.add_argument("--force-class", action="store_true",
                         help="give the most likely class even for films that fail the checks (constant image, "
                              "implausible lung mask) instead of abstaining; the failed checks stay in the notes")
    predict.add_argument("--device", default="auto", metavar="{auto,cpu,cuda,cuda:N}", help="where the model runs (default: auto)")

    docs = command("docs", "copy the run's tables from reports/summary.md into README.md and docs/", "cxr docs --check",
                   description="Rewrites every `<!-- reports/summary.md: NAME -->` block of README.md and "
                               "docs/*.md with the summary's table of that name (run after `dvc repro`), the "
                               "`<!-- dvc dag: stage families -->` block with the pipeline's graph and the "
                               "`<!-- code dependencies: what a change re-runs -->` block with what a change to each "
                               "library module re-runs.")
    docs.add_argument("--check", action="store_true", help="change nothing; exit 1 naming the pages out of date")

    experiments = command("experiments", "the commits and experiments of `dvc exp show`, one line per run with its "
                          "headline scores and changed params, best first", "cxr experiments --run 'lungs/*'")
    experiments.add_argument("--run", metavar="GLOB", help="only these runs: <dataset>/<model> or segmenter/<dataset>")
    experiments.add_argument("--sort-by", default="macro_f1", choices=list(TITLES),
                             help="the score to order by, best first (default: macro_f1; ece: lowest first)")
    experiments.add_argument("--width", type=int, default=120, help="cut each line to this many characters (default: 120)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "predict":
        from cxr.cli.predict import run_predict

        return run_predict(args)
    if args.command == "inspect":
        from cxr.cli.inspect import run_inspect

        return run_inspect(args.paths, as_json=args.json, layout=args.layout, workers=args.workers,
                           class_map=args.class_map)
    if args.command == "pr-report":
        return run_pr_report(args.base, args.out, args.plots_url)
    if args.command == "check":
        return run_check()
    if args.command == "docs":
        return run_docs(args.check)
    if args.command == "experiments":
        from cxr.cli.experiments import run_experiments

        return run_experiments(args.sort_by, args.run, args.width)
    from cxr.cli.preset import run_preset

    return run_preset(args.name, args.set)


LAYOUT_CHOICES = get_args(Layout)  # what `source.<name>.layout` accepts


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cxr-pipeline")
    except PackageNotFoundError:  # run from a checkout's src/ without installing it
        return "(not installed)"


def run_check() -> int:
    from cxr.cli.check import check_params

    if not PARAMS_FILE.exists():
        print(f"error: {PARAMS_FILE} not found: run `cxr check` in the repository's root folder", file=sys.stderr)
        return 1
    problems = check_params(PARAMS_FILE)
    if problems:
        print(f"error: {PARAMS_FILE} is not a runnable pipeline:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    print(f"{PARAMS_FILE}: every section valid, every name it gives another exists and is used")
    return 0


def run_docs(check: bool) -> int:
    from cxr.cli.docs import DocsError, documentation_pages, sync

    try:
        summary = stage_path("report", "--summary")
    except PipelineFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not summary.exists():
        print(f"error: {summary} not found: run `dvc repro` (or `dvc pull`) in the repository root first",
              file=sys.stderr)
        return 1
    try:
        stale = sync(documentation_pages(), summary, write=not check, root=Path("."))
    except DocsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if check and stale:
        print(f"error: tables older than {summary} in: {', '.join(map(str, stale))}; run `cxr docs`", file=sys.stderr)
        return 1
    print(f"{'rewrote' if stale else 'up to date:'} {', '.join(map(str, stale)) or 'every page'}")
    return 0


def run_pr_report(base: str, out: Path, plots_url: str | None) -> int:
    from cxr.cli.dvc import DvcCommandError
    from cxr.cli.pr_report import ChangeReportError, write_change_report

    try:
        path = write_change_report(base, out, plots_url=plots_url)
    except (ChangeReportError, DvcCommandError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{path}: params, metrics and plots of the workspace against {base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
