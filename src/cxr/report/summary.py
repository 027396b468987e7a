"""One table and one figure comparing every model x dataset evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # a bare Figure needs no GUI backend: the pipeline runs on servers and in CI

from cxr.io.files import atomic_path
from cxr.paths import metrics_file


class MissingMetrics(FileNotFoundError):
    """An evaluation the report needs has not run."""


def load_metrics(dataset: str, model: str, tested_on: str | None = None) -> dict:
    path = metrics_file(dataset, model, tested_on)
    if not path.exists():
        raise MissingMetrics(f"{path} not found: evaluate {model}/{dataset} on {tested_on or dataset} first (`dvc repro`)")
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


def cross_table(runs: list[tuple[str, str, str, dict, dict]], level: str) -> str:
    """Models tested on another dataset's test split, beside their score on their own."""
    lines = [
        f"| Trained on | Tested on | Model | Accuracy [{level} CI] | Macro-F1 [{level} CI] | ROC-AUC (macro) "
        "| Macro-F1 change | Test images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for trained_on, tested_on, model, m, own in runs:
        lines.append(
            f"| {trained_on} | {tested_on} | {model} "
            f"| {m['accuracy']:.3f} [{m['accuracy_ci_low']:.3f}, {m['accuracy_ci_high']:.3f}] "
            f"| {m['macro_f1']:.3f} [{m['macro_f1_ci_low']:.3f}, {m['macro_f1_ci_high']:.3f}] "
            f"| {_number(m['roc_auc_macro'])} | {m['macro_f1'] - own['macro_f1']:+.3f} | {m['n_test']} |"
        )
    return "\n".join(lines) + "\n"


def comparison_figure(path: Path, runs: list[tuple[str, str, dict]], datasets: list[str], models: list[str], level: str) -> None:
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
    with atomic_path(path) as tmp:
        # No software/version stamp, so the same metrics give the same bytes.
        figure.savefig(tmp, dpi=120, format="png", metadata={"Software": None})
