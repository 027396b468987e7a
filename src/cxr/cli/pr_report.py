"""`cxr pr-report`: what a change did to the pipeline's results, as one markdown report for a pull request:
`dvc params diff`, `dvc metrics diff` and the plots whose data moved, each against a base revision. The GitHub
workflow .github/workflows/pr-report.yml posts the same file as the pull request's comment.

Not in cxr.report: that package is the report stage's code, and this command is no stage."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cxr.cli.dvc import run_dvc
from cxr.io.files import atomic_dir
from cxr.metrics.classification import slug
from cxr.paths import PipelineFileError, stage_path

REPORT_FILE = "report.md"
FULL_REPORT_FILE = "report-full.md"
# GitHub refuses comments over 65,536 characters; the tables are cut above this, the full ones stay in the folder.
COMMENT_LIMIT = 60_000
WORKSPACE = "workspace"
# The scores a reviewer reads first, above DVC's full table: one row per run whose score moved visibly.
PRECISION = 3


class ChangeReportError(RuntimeError):
    """A dvc command the report needs failed (not a DVC repository, unknown base revision, ...)."""


# Fields that tag each record of a plot shared by several runs (evaluate's roc.json: every model, every class);
# a change is reported per model and class, so that the report shows only what moved.
GROUP_FIELDS = ("model", "class")


@dataclass(frozen=True)
class PlotChange:
    name: str  # the plot's file as declared in dvc.yaml
    kind: str  # "vega" (data points) or "image"
    status: str  # "changed", "new" or "removed"
    fields: tuple[str, str] = ("", "")  # vega: the (x, y) fields of a point
    points: dict[str, list[dict]] = field(default_factory=dict)  # vega: revision -> points
    images: dict[str, Path] = field(default_factory=dict)  # image: revision -> the file dvc plots diff wrote
    group: tuple[tuple[str, str], ...] = ()  # the GROUP_FIELDS values of these points in a shared plot

    @property
    def run(self) -> str:
        """The run a plot belongs to, whose changed plots share one figure: reports/train/lungs/resnet18 for its
        per-epoch logs (.../plots/metrics/*.tsv), reports/plots/evaluate/lungs/resnet18 for its part of the
        dataset's ROC and confusion data."""
        model = dict(self.group).get("model")
        if model:
            return str(Path(self.name).parent / model)
        parts = Path(self.name).parts
        cut = next((i for i, part in enumerate(parts) if i and part in ("plots", "roc")), len(parts) - 1)
        return str(Path(*parts[:cut]))

    @property
    def series(self) -> str:
        if self.group:
            return "/".join([Path(self.name).stem, *(slug(value) for key, value in self.group if key != "model")])
        return str(Path(self.name).relative_to(self.run)).removeprefix("plots/metrics/").rsplit(".", 1)[0]

    @property
    def categorical(self) -> bool:
        return not all(_is_number(p[self.fields[0]]) for points in self.points.values() for p in points)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def commit_of(base: str) -> str:
    """The commit `base` names; DVC's diffs take an unknown revision for an empty one and would report nothing."""
    result = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], capture_output=True,
                            text=True)
    if result.returncode:
        raise ChangeReportError(f"no commit {base!r} in this repository's git history: fetch it (git fetch origin) or "
                                "name another with --base; a CI checkout needs the base branch (fetch-depth: 0)")
    return result.stdout.strip()


def plot_changes(base: str, images_dir: Path) -> list[PlotChange]:
    """The plots of dvc.yaml whose data differ between `base` and the workspace, new ones and removed ones; a
    plot shared by several runs, per run (and class)."""
    shown = json.loads(run_dvc("plots", "diff", base, "--json", "-o", str(images_dir)))
    changes = []
    for name, renders in sorted(shown.get("data", {}).items()):
        if renders[0]["type"] == "image":
            images = {render["revisions"][0]: Path(render["url"]) for render in renders}
            versions = {rev: path.read_bytes() for rev, path in images.items()}
            changes += _changed(base, versions, name=name, kind="image", images=images)
            continue
        groups = defaultdict(lambda: defaultdict(list))
        for render in renders:
            for point in render["content"]["data"]["values"]:
                group = tuple((key, str(point[key])) for key in GROUP_FIELDS if key in point)
                groups[group][point["rev"]].append({k: v for k, v in point.items() if k != "rev" and k not in GROUP_FIELDS})
        content = renders[0]["content"]
        for group, points in sorted(groups.items()):
            first = next(iter(points.values()))[0]
            x_field = content.get("encoding", {}).get("x", {}).get("field") or next(iter(first))
            y_field = next(key for key in first if key not in (x_field, "timestamp"))
            versions = {rev: json.dumps(rev_points, sort_keys=True) for rev, rev_points in points.items()}
            changes += _changed(base, versions, name=name, kind="vega", fields=(x_field, y_field), points=dict(points),
                                group=group)
    return changes


def _changed(base: str, versions: dict, **change) -> list[PlotChange]:
    """[the PlotChange] where the versions differ, new or removed; [] where they are the same."""
    if WORKSPACE not in versions:
        status = "removed"
    elif base not in versions:
        status = "new"
    elif versions[base] != versions[WORKSPACE]:
        status = "changed"
    else:
        return []
    return [PlotChange(status=status, **change)]


def run_figure(path: Path, run: str, changes: list[PlotChange], base: str) -> None:
    """One panel per changed data plot of a run: curves with the base revision dashed under the workspace;
    a confusion matrix as the workspace's counts with the base's beside each."""
    figure = Figure(figsize=(3.0 * len(changes), 2.8), layout="constrained")
    for axes, change in zip(figure.subplots(1, len(changes), squeeze=False)[0], changes):
        x_field, y_field = change.fields
        if change.categorical:
            _confusion_panel(axes, change, base)
        else:
            for rev, style in ((base, "--"), (WORKSPACE, "-")):
                points = change.points.get(rev, [])
                if points:
                    axes.plot([float(p[x_field]) for p in points], [float(p[y_field]) for p in points], style,
                              marker="." if len(points) < 30 else None, label=rev)
            axes.set_xlabel(x_field, fontsize=8)
            axes.legend(fontsize=7)
        axes.set_title(change.series, fontsize=9)
        axes.tick_params(labelsize=7)
    figure.suptitle(run, fontsize=9)
    figure.savefig(path, dpi=100)


def _confusion_panel(axes, change: PlotChange, base: str) -> None:
    actual, predicted = change.fields
    labels = sorted({p[f] for points in change.points.values() for p in points for f in (actual, predicted)})
    counts = {rev: np.zeros((len(labels), len(labels)), dtype=int) for rev in (base, WORKSPACE)}
    for rev, points in change.points.items():
        for p in points:
            counts[rev][labels.index(p[actual]), labels.index(p[predicted])] += 1
    axes.imshow(counts[WORKSPACE] - counts[base], cmap="coolwarm", vmin=-max(1, counts[base].max()),
                vmax=max(1, counts[base].max()))
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(j, i, f"{counts[WORKSPACE][i, j]}\n(was {counts[base][i, j]})", ha="center", va="center", fontsize=7)
    axes.set_xticks(range(len(labels)), labels, fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel(predicted, fontsize=8)
    axes.set_ylabel(actual, fontsize=8)


def _shown(value, rounded: bool) -> str:
    if value is None:
        return "-"
    # Scores to the shown precision; params as written (a learning rate of 1e-4 is no 0.000).
    return f"{value:.{PRECISION}f}" if rounded and isinstance(value, float) else str(value)


def diff_table(diff: dict, base: str, kind: str, visible_only: bool = False) -> list[str]:
    """`dvc params diff --json` or `dvc metrics diff --json` as a markdown table sorted by file and key (DVC's
    own --md table comes in a different order on every run). `visible_only`: only the metrics that moved by at
    least the shown precision (the headline's table)."""
    rows = []
    for path, entries in sorted(diff.items()):
        for key, change in sorted(entries.items()):
            delta = change.get("diff")
            if visible_only and delta is not None and round(delta, PRECISION) == 0:
                continue
            row = [path, key, _shown(change.get("old"), kind == "metric"), _shown(change.get("new"), kind == "metric")]
            if kind == "metric":
                row.append("-" if delta is None else f"{delta:+.{PRECISION}f}")
            rows.append("| " + " | ".join(row) + " |")
    if not rows:
        return []
    header = ["file", kind, f"`{base}`", WORKSPACE] + (["change"] if kind == "metric" else [])
    return ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2), *rows, ""]


def plot_lines(changes: list[PlotChange], base: str, out_dir: Path, plots_url: str | None) -> list[str]:
    """The changed plots: one figure per run for data plots, both versions of an image plot side by side; the
    figures are written under out_dir/plots and shown, or linked to `plots_url`."""
    if not changes:
        return ["No plot changed.", ""]
    (out_dir / "plots").mkdir()
    runs = defaultdict(list)
    for change in changes:
        if change.kind == "vega":
            runs[change.run].append(change)
    figures = []
    for run, run_changes in runs.items():
        file = f"plots/{run.replace('/', '_')}.png"
        run_figure(out_dir / file, run, run_changes, base)
        title = f"{run}: {', '.join(c.series + ('' if c.status == 'changed' else f' ({c.status})') for c in run_changes)}"
        figures.append((title, [file]))
    for change in changes:
        if change.kind == "image":
            files = []
            for rev, prefix in ((base, "base"), (WORKSPACE, WORKSPACE)):
                if rev in change.images:
                    files.append(f"plots/{prefix}_{change.name.replace('/', '_')}")
                    shutil.copyfile(change.images[rev], out_dir / files[-1])
            figures.append((f"{change.name} ({change.status}; `{base}` left, {WORKSPACE} right)", files))
    if plots_url:
        return [*(f"- {title}" for title, _ in figures), "",
                f"The figures, and DVC's interactive plots page: [the `pr-report` artifact]({plots_url}).", ""]
    lines = []
    for title, files in figures:
        lines += [f"**{title}**", "", " ".join(f'<img src="{f}" width="{800 // len(files)}">' for f in files), ""]
    return lines


def write_change_report(base: str, out_dir: Path, *, plots_url: str | None = None) -> Path:
    """Writes out_dir/report.md (and the figures it shows, and DVC's interactive plots page under dvc_plots/),
    replacing the folder as a whole. With `plots_url` the report links the figures there instead of showing
    them: a pull request comment cannot show files that are not hosted anywhere."""
    if out_dir.is_file() or (out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / REPORT_FILE).is_file()):
        raise ChangeReportError(f"{out_dir} exists and is no earlier report (no {REPORT_FILE} in it); the report's "
                                "folder is replaced as a whole: name a new one with --out")
    commit = commit_of(base)
    try:
        headline_file = stage_path("report", "--headline")
    except PipelineFileError as err:
        raise ChangeReportError(str(err)) from None
    metrics_dir = headline_file.parent.as_posix()  # every stage's metrics file lies under it
    stale = sorted(json.loads(run_dvc("status", "--json") or "{}"))
    params = diff_table(json.loads(run_dvc("params", "diff", base, "--json") or "{}"), base, "param")
    # The headline is the one metrics file dvc.yaml declares; the rest of metrics/ is named to be diffed.
    headline = diff_table(json.loads(run_dvc("metrics", "diff", base, "--json") or "{}"), base, "metric", visible_only=True)
    every_diff = json.loads(run_dvc("metrics", "diff", base, "--targets", metrics_dir, "--json") or "{}")
    every_diff.pop(headline_file.as_posix(), None)
    metrics = diff_table(every_diff, base, "metric")
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory() as scratch:
        run_dvc("plots", "diff", base, "-o", str(tmp / "dvc_plots"))
        lines = [f"## Pipeline results: this branch against `{base}` ({commit[:8]})", ""]
        if stale:
            lines += [f"> **Stale:** {len(stale)} stage(s) changed since their outputs were made "
                      f"({', '.join(stale[:8])}{', ...' if len(stale) > 8 else ''}); run `dvc repro` first.", ""]
        lines += ["### Params", "", *(params or ["No params changed.", ""]), "### Metrics", ""]
        if metrics or headline:
            lines += headline or ["No headline score moved by the shown precision.", ""]
            if metrics:
                lines += [f"<details><summary>All {len(metrics) - 3} changed metrics (<code>dvc metrics diff --targets "
                          f"{metrics_dir}</code>)</summary>", "", *metrics, "</details>", ""]
        else:
            lines += ["No metric changed.", ""]
        lines += ["### Plots", "", *plot_lines(plot_changes(base, Path(scratch)), base, tmp, plots_url)]
        text = "\n".join(lines).rstrip() + "\n"
        if len(text) > COMMENT_LIMIT:
            (tmp / FULL_REPORT_FILE).write_text(text)
            text = (text[:COMMENT_LIMIT].rsplit("\n", 1)[0]
                    + f"\n\n... cut at {COMMENT_LIMIT:,} characters, a comment's limit: all of it is in {FULL_REPORT_FILE}.\n")
        (tmp / REPORT_FILE).write_text(text)
    return out_dir / REPORT_FILE
