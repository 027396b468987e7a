"""The `cxr` command: look at raw data before a model learns from it, and switch params presets.

    cxr inspect PATH [PATH ...] [--json]   what the index stage will find in a folder or zip, and what sources share
    cxr preset NAME [--set KEY=VALUE ...]   apply presets/NAME.yaml (dotted keys) to params.yaml, comments kept
    cxr pr-report [--base REV] [--out DIR]  params, metrics and plots changed against REV, as DIR/report.md
    cxr predict PATH [PATH ...] --model NAME [--json] [--explain DIR]   a trained model on images, folders, zips
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxr.params import PARAMS_FILE
from cxr.paths import SEGMENTER_FILE

DEFAULT_CLASSES = ["COVID-19", "Pneumonia", "Normal"]
PRESETS_DIR = Path("presets")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="inspect raw datasets (folders or zips) without writing anything")
    inspect.add_argument("paths", nargs="+", type=Path, help="dataset folders or zip archives, as downloaded")
    inspect.add_argument("--json", action="store_true", help="the full reports as JSON on stdout")
    inspect.add_argument("--layout", default="auto", help="force a layout instead of detecting it")
    inspect.add_argument("--workers", type=int, default=0, help="decoding processes (0: one per core)")

    preset = commands.add_parser("preset", help="apply a params preset from presets/ to params.yaml")
    preset.add_argument("name", nargs="?", help="preset name (a file presets/<name>.yaml); omit to list them")
    preset.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="one more dotted key to set, e.g. source.radiography.path=data/raw/x.zip")

    report = commands.add_parser("pr-report", help="what this branch did to params, metrics and plots, as markdown")
    report.add_argument("--base", default="main", help="the revision to compare with (default: main)")
    report.add_argument("--out", type=Path, default=Path("pr-report"), help="folder to (re)write (default: pr-report)")
    report.add_argument("--plots-url", help="link the figures to this page instead of showing them (a PR comment)")

    predict = commands.add_parser("predict", help="class probabilities of X-ray files (PNG, JPEG, DICOM), folders or zips")
    predict.add_argument("inputs", nargs="+", type=Path, help="image files, folders or zip archives")
    predict.add_argument("--model", required=True,
                         help="registry name (resnet18-full), <dataset>/<model> (full/resnet18) or a checkpoint path")
    predict.add_argument("--json", action="store_true", help="the predictions as JSON on stdout")
    predict.add_argument("--explain", type=Path, metavar="DIR", help="write a Grad-CAM and saliency figure per image to DIR")
    predict.add_argument("--segmenter", type=Path, help=f"lung segmenter checkpoint (default: {SEGMENTER_FILE} when present)")
    predict.add_argument("--no-segmenter", action="store_true", help="full-view models: skip the lung segmentation check")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")

    args = parser.parse_args(argv)
    if args.command == "predict":
        from cxr.cli.predict import run_predict

        return run_predict(args)
    if args.command == "inspect":
        return run_inspect(args.paths, as_json=args.json, layout=args.layout, workers=args.workers)
    if args.command == "pr-report":
        return run_pr_report(args.base, args.out, args.plots_url)
    return run_preset(args.name, args.set)


def run_pr_report(base: str, out: Path, plots_url: str | None) -> int:
    from cxr.cli.pr_report import ChangeReportError, write_change_report

    try:
        path = write_change_report(base, out, plots_url=plots_url)
    except ChangeReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{path}: params, metrics and plots of the workspace against {base}")
    return 0


def run_inspect(paths: list[Path], *, as_json: bool, layout: str, workers: int) -> int:
    from cxr.data.index import SourceIndexError, build_index
    from cxr.data.params import SourceParams
    from cxr.data.report import shared_images, shared_lines, summary_lines
    from cxr.params import worker_count

    classes, index = repository_settings()
    built, failed = [], 0
    for path in paths:
        try:
            source = SourceParams(path=str(path), layout=layout)
            built.append(build_index(path.name, source, index, classes, worker_count(workers)))
        except (SourceIndexError, ValueError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            failed += 1
    shared = shared_images(built, index.near_duplicate_distance)
    if as_json:
        json.dump({"sources": [b.report for b in built], "shared_images": shared}, sys.stdout, indent=1)
        print()
    else:
        for b in built:
            print("\n".join(summary_lines(b.report)))
        if len(built) > 1:
            print("\n".join(shared_lines(shared)))
    return 1 if failed else 0


def repository_settings():
    """This repository's classes and index settings when run inside it, else the defaults of params.yaml."""
    from cxr.data.params import IndexParams, SplitParams
    from cxr.params import read_params_file

    try:
        raw = read_params_file(PARAMS_FILE)
        return list(raw["classes"]), IndexParams.model_validate(raw["index"])
    except Exception:  # noqa: BLE001 - outside a checkout (or with a broken params.yaml) the defaults do
        split = SplitParams(train=0.7, val=0.15, test=0.15)
        return DEFAULT_CLASSES, IndexParams(seed=42, split=split, near_duplicate_distance=12, max_image_pixels=50_000_000)


def preset_changes(name: str, presets: list[str]) -> dict:
    """A preset's dotted keys, after those of the preset it names as `base` (one place for shared settings)."""
    from ruamel.yaml import YAML

    changes = dict(YAML(typ="safe").load((PRESETS_DIR / f"{name}.yaml").read_text()) or {})
    base = changes.pop("base", None)
    if base is None:
        return changes
    if base not in presets or base == name:
        raise SystemExit(f"error: preset {name!r} has base {base!r}, which is no other preset in {PRESETS_DIR}/")
    return {**preset_changes(base, presets), **changes}


def run_preset(name: str | None, settings: list[str]) -> int:
    from ruamel.yaml import YAML

    presets = sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))
    if name is None:
        for preset in presets:
            first = (PRESETS_DIR / f"{preset}.yaml").read_text().splitlines()[0].lstrip("# ")
            print(f"{preset}: {first}")
        return 0
    if name not in presets:
        print(f"error: no preset {name!r} in {PRESETS_DIR}/ (there are: {', '.join(presets) or 'none'})", file=sys.stderr)
        return 2
    yaml = YAML()  # round-trip: params.yaml keeps its comments and order
    yaml.width = 4096
    changes = preset_changes(name, presets)
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            print(f"error: --set {setting!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        changes[key] = YAML(typ="safe").load(value)
    params = yaml.load(PARAMS_FILE.read_text())
    for key, value in changes.items():
        node, parts = params, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    from io import StringIO

    out = StringIO()
    yaml.dump(params, out)
    from cxr.io.files import write_text

    write_text(PARAMS_FILE, out.getvalue())
    print(f"params.yaml: applied preset {name} ({len(changes)} keys); check with `git diff params.yaml`, run `dvc repro`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
