"""The run's headline: a few scores per model x dataset run and the segmenter's Dice per test set, in
metrics/headline.json, the one metrics file dvc.yaml declares. So `dvc exp show`, `dvc metrics show` and
`dvc metrics diff` open with what a reader compares, grouped by score (`macro_f1.full/resnet18`, ...), and
`cxr experiments` tabulates them. Every other figure stays in its stage's file under metrics/, git-tracked and
diffable by naming it: `dvc metrics diff --targets metrics/classify`.
"""

from __future__ import annotations

from collections.abc import Iterable

# headline name -> (which file of the run, its key there)
RUN_SCORES = {"macro_f1": ("classify", "macro_f1"), "accuracy": ("classify", "accuracy"),
              "roc_auc": ("classify", "roc_auc_macro"), "ece": ("classify", "ece"),
              "cam_lung_lift": ("explain", "cam_lung_lift")}
SEGMENTER_SCORES = {"dice": "dice"}
DIGITS = 4  # the precision a bootstrap interval of a test split supports; fewer digits also keep the columns narrow


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), DIGITS)


def run_name(dataset: str, model: str) -> str:
    return f"{dataset}/{model}"


def headline_metrics(runs: Iterable[tuple[str, str, dict]], explain_runs: Iterable[tuple[str, str, dict]],
                     segment_runs: Iterable[tuple[str, dict, dict]]) -> dict[str, dict[str, float | None]]:
    """score -> run -> value: each classify run's scores with its explanation's CAM lung lift, and the
    segmenter's on each dataset it was tested on (runs named `segmenter/<dataset>`)."""
    files = {"classify": {run_name(d, m): metrics for d, m, metrics in runs},
             "explain": {run_name(d, m): metrics for d, m, metrics in explain_runs}}
    headline = {score: {run: _rounded(files[kind].get(run, {}).get(key)) for run in files["classify"]}
                for score, (kind, key) in RUN_SCORES.items()}
    for score, key in SEGMENTER_SCORES.items():
        headline[score] = {f"segmenter/{dataset}": _rounded(evaluation.get(key)) for dataset, evaluation, _ in segment_runs}
    return headline


TITLES = {"macro_f1": "Macro-F1", "accuracy": "Accuracy", "roc_auc": "ROC-AUC", "ece": "ECE", "cam_lung_lift": "CAM lift",
          "dice": "Dice"}
LOWER_IS_BETTER = frozenset({"ece"})  # calibration error; every other score is better higher
