"""`cxr experiments`: the commits and experiments `dvc exp show` knows, one line per model x dataset run with
its headline scores (metrics/headline.json) and the params the experiment changed, best first, in 120 columns:
the table `dvc exp show` cannot fit, since it also lists every param and dependency.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from cxr.cli.dvc import DvcCommandError, run_dvc
from cxr.report.headline import DIGITS, LOWER_IS_BETTER, TITLES


@dataclass(frozen=True)
class Row:
    experiment: str
    run: str
    scores: dict[str, float | None]
    changed: str  # the params it sets differently from its baseline commit


class ExperimentsError(RuntimeError):
    """No commit or experiment has headline metrics; the message says what to do."""


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _headline_of(data: dict, headline_file: str) -> dict[str, dict[str, float | None]]:
    return (data.get("metrics") or {}).get(headline_file, {}).get("data") or {}


def _params_of(data: dict) -> dict[str, object]:
    flat = {}
    for entry in (data.get("params") or {}).values():
        flat.update(_flat(entry.get("data") or {}))
    return flat


def _label(entry: dict) -> str:
    """An experiment's or branch's name, else a commit's short hash (`workspace` is a rev of its own)."""
    rev = entry["rev"]
    return entry.get("name") or (rev[:7] if len(rev) == 40 else rev)


def experiment_rows(shown: list[dict], headline_file: str) -> list[Row]:
    """One row per (commit or experiment) x run from `dvc exp show --json`: its headline scores and, for an
    experiment, the params it changed against the commit it was run from."""
    rows = []
    for commit in shown:
        base_data = commit.get("data") or {}
        base_params = _params_of(base_data)
        named = [(_label(commit), base_data, "")]
        for branch in commit.get("experiments") or []:
            for rev in (branch.get("revs") or [])[:1]:  # the experiment's last commit
                data = rev.get("data") or {}
                params = _params_of(data)
                changed = ", ".join(f"{key}={value}" for key, value in sorted(params.items())
                                    if base_params.get(key) != value)
                named.append((_label(rev), data, changed))
        for name, data, changed in named:
            headline = _headline_of(data, headline_file)
            runs = dict.fromkeys(run for by_run in headline.values() for run in by_run)
            rows += [Row(name, run, {score: by_run.get(run) for score, by_run in headline.items()}, changed)
                     for run in runs]
    return rows


def load_experiment_rows(headline_file: str) -> list[Row]:
    rows = experiment_rows(json.loads(run_dvc("exp", "show", "--json") or "[]"), headline_file)
    if not rows:
        raise ExperimentsError(f"no commit or experiment has {headline_file}: run `dvc repro` (or `dvc exp run`) first")
    return rows


def experiments_table(rows: Sequence[Row], sort_by: str = "macro_f1", width: int = 120) -> str:
    """Rows best first by `sort_by` (missing scores last), only the score columns some row has, each line cut to
    `width` characters (the changed params are last and give way)."""
    columns = [(key, title) for key, title in TITLES.items() if any(row.scores.get(key) is not None for row in rows)]
    sign = 1 if sort_by in LOWER_IS_BETTER else -1
    ordered = sorted(rows, key=lambda row: (row.scores.get(sort_by) is None, sign * (row.scores.get(sort_by) or 0.0)))
    header = ["Experiment", "Run", *(title for _, title in columns), "Changed params"]
    body = [[row.experiment, row.run, *("-" if row.scores.get(key) is None else f"{row.scores[key]:.{DIGITS}f}"
                                          for key, _ in columns), row.changed or "-"] for row in ordered]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]

    def line(cells: list[str]) -> str:
        text = "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))
        text = f"{text}  {cells[-1]}"
        return text if len(text) <= width else text[:width - 1] + "…"

    return "\n".join([line(header), *map(line, body)])


def run_experiments(sort_by: str, run_filter: str | None, width: int) -> int:
    from fnmatch import fnmatch

    from cxr.paths import PIPELINE_FILE, PipelineFileError, stage_path

    if not PIPELINE_FILE.is_file():
        print(f"error: no {PIPELINE_FILE} here: run `cxr experiments` in the repository's root folder", file=sys.stderr)
        return 1
    try:
        rows = load_experiment_rows(stage_path("report", "--headline").as_posix())
    except (PipelineFileError, ExperimentsError, DvcCommandError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if run_filter:
        rows = [row for row in rows if fnmatch(row.run, run_filter)]
        if not rows:
            print(f"error: no run matches {run_filter!r} (runs are <dataset>/<model> and segmenter/<dataset>)", file=sys.stderr)
            return 1
    print(experiments_table(rows, sort_by, width))
    return 0
