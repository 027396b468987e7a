"""Gather every model x dataset evaluation into one table and one comparison figure.

    python -m stages.report
"""

from __future__ import annotations

import json

import numpy as np
# A bare Figure needs no GUI backend: the pipeline runs on servers and in CI.
from matplotlib.figure import Figure

from stages.files import atomic_path, write_text
from stages.params import stage_arguments
from stages.paths import COMPARISON_FIGURE, SUMMARY_FILE, metrics_file


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_arguments(__doc__, argv)
    runs = [(dataset, model, load_metrics(dataset, model)) for dataset in params.datasets for model in params.models]
    level = f"{params.evaluate.confidence_level:.0%}"
    write_text(SUMMARY_FILE, summary_table(runs, level))
    comparison_figure(runs, params.datasets, params.models, level)
    print(SUMMARY_FILE.read_text())


def load_metrics(dataset: str, model: str) -> dict:
    path = metrics_file(dataset, model)
    if not path.exists():
        raise SystemExit(f"error: {path} not found: evaluate {model} on {dataset} first (`dvc repro`)")
    return json.loads(path.read_text())


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summary_table(runs: list[tuple[str, str, dict]], level: str) -> str:
    lines = [
        f"| Dataset | Model | Accuracy [{level} CI] | Macro-F1 [{level} CI] | ROC-AUC (macro) | ECE | Test images |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, model, m in runs:
        lines.append(
            f"| {dataset} | {model} "
            f"| {m['accuracy']:.3f} [{m['accuracy_ci_low']:.3f}, {m['accuracy_ci_high']:.3f}] "
            f"| {m['macro_f1']:.3f} [{m['macro_f1_ci_low']:.3f}, {m['macro_f1_ci_high']:.3f}] "
            f"| {_number(m['roc_auc_macro'])} | {m['ece']:.3f} | {m['n_test']} |"
        )
    return "\n".join(lines) + "\n"


def comparison_figure(runs: list[tuple[str, str, dict]], datasets: list[str], models: list[str], level: str) -> None:
    metrics = {(dataset, model): m for dataset, model, m in runs}
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2, sharey=True)
    width = 0.8 / len(datasets)
    positions = np.arange(len(models))
    for axis, (key, title) in zip(axes, [("accuracy", "Accuracy"), ("macro_f1", "Macro-F1")]):
        for offset, dataset in enumerate(datasets):
            values = np.array([metrics[dataset, model][key] for model in models])
            low = np.array([metrics[dataset, model][f"{key}_ci_low"] for model in models])
            high = np.array([metrics[dataset, model][f"{key}_ci_high"] for model in models])
            axis.bar(positions + (offset - (len(datasets) - 1) / 2) * width, values, width,
                     yerr=np.vstack([values - low, high - values]), capsize=3, label=dataset)
        axis.set_xticks(positions, models, rotation=15)
        axis.set_title(f"{title} on the test split ({level} bootstrap CI)")
        axis.set_ylim(0, 1)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(title="dataset")
    figure.tight_layout()
    with atomic_path(COMPARISON_FIGURE) as tmp:
        # No software/version stamp, so the same metrics give the same bytes.
        figure.savefig(tmp, dpi=120, format="png", metadata={"Software": None})


if __name__ == "__main__":
    main()
