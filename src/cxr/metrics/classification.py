"""Classification metrics: scikit-learn's definitions, calibration error and bootstrap intervals."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cxr.io.files import atomic_dir, atomic_path, write_json
from cxr.metrics.intervals import bootstrap_interval

# scikit-learn and scipy.stats are imported inside the functions that use them: they cost a second of
# start-up, and the stages that import this module for one light function (train, report) never need them.


def slug(name: str) -> str:
    """Metric-key form of a class name: 'COVID-19' -> 'covid19'."""
    return re.sub(r"[^a-z0-9]+", "", name.lower()) or "class"


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """Top-label ECE: |accuracy - confidence| per equal-width confidence bin, weighted by the bin's share."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of exactly 0 cannot occur for argmax.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def accuracy_statistic(labels: np.ndarray, predictions: np.ndarray, axis: int = -1) -> np.ndarray:
    """scikit-learn's accuracy_score along `axis` (a bootstrap's thousand resamples in one call)."""
    return (labels == predictions).mean(axis=axis)


def macro_f1_statistic(classes: Sequence[int]) -> Callable[..., np.ndarray]:
    """scikit-learn's f1_score(labels=classes, average="macro", zero_division=0) along `axis`, in the same float
    operations (the same values to the last bit, tests/test_metrics.py): the bootstrap's thousand resamples in one
    call instead of a thousand calls of about a millisecond each."""

    def macro_f1(labels: np.ndarray, predictions: np.ndarray, axis: int = -1) -> np.ndarray:
        labels, predictions = np.moveaxis(labels, axis, -1), np.moveaxis(predictions, axis, -1)
        scores = []
        for c in classes:
            actual, predicted = labels == c, predictions == c
            true_positives = (actual & predicted).sum(axis=-1).astype(np.float64)
            denominator = actual.sum(axis=-1).astype(np.float64) + predicted.sum(axis=-1).astype(np.float64)
            scores.append(np.divide(2 * true_positives, denominator, out=np.zeros_like(denominator),
                                    where=denominator != 0))
        return np.mean(np.stack(scores, axis=-1), axis=-1)

    return macro_f1


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], *, calibration_bins: int,
                           bootstrap_resamples: int, confidence_level: float, seed: int) -> dict[str, float | int | None]:
    """Flat metrics dict (so `dvc metrics diff` stays readable): overall, macro and per-class figures."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support

    class_ids = list(range(len(classes)))
    # Macro figures average over the classes the test split has: an external test set without COVID-19
    # (Kermany) must not score a zero for a class it cannot contain.
    present = [index for index in class_ids if (labels == index).any()]
    predictions = probabilities.argmax(axis=1)

    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, labels=class_ids, zero_division=0)
    auc = per_class_auc(labels, probabilities, class_ids)
    present_auc = [value for value in auc if value is not None]
    accuracy_low, accuracy_high = bootstrap_interval(labels, predictions, accuracy_statistic, bootstrap_resamples,
                                                     confidence_level, seed)
    f1_low, f1_high = bootstrap_interval(labels, predictions, macro_f1_statistic(present), bootstrap_resamples,
                                         confidence_level, seed)

    metrics: dict[str, float | int | None] = {
        "n_test": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "accuracy_ci_low": accuracy_low,
        "accuracy_ci_high": accuracy_high,
        "macro_f1": float(f1_score(labels, predictions, labels=present, average="macro", zero_division=0)),
        "macro_f1_ci_low": f1_low,
        "macro_f1_ci_high": f1_high,
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "roc_auc_macro": float(np.mean(present_auc)) if present_auc else None,
        "ece": expected_calibration_error(labels, probabilities, calibration_bins),
        "log_loss": float(log_loss(labels, probabilities, labels=class_ids)),
    }
    for index, name in enumerate(classes):
        key = slug(name)
        # A class the split lacks has no recall or F1 (None); its precision still says how often it was wrongly chosen.
        metrics[f"precision_{key}"] = float(precision[index])
        metrics[f"recall_{key}"] = float(recall[index]) if index in present else None
        metrics[f"f1_{key}"] = float(f1[index]) if index in present else None
        metrics[f"roc_auc_{key}"] = auc[index]
    return metrics


def metrics_line(metrics: dict) -> str:
    """The headline of classification_metrics in one line, as a stage prints it."""
    auc = "n/a" if metrics["roc_auc_macro"] is None else format(metrics["roc_auc_macro"], ".3f")
    return (f"accuracy {metrics['accuracy']:.3f} [{metrics['accuracy_ci_low']:.3f}, {metrics['accuracy_ci_high']:.3f}], "
            f"macro-F1 {metrics['macro_f1']:.3f}, AUC {auc}, ECE {metrics['ece']:.3f}")


def validation_scores(labels: np.ndarray, probabilities: np.ndarray, num_classes: int) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of one validation pass, by the same definitions as the test metrics."""
    from sklearn.metrics import f1_score, log_loss

    class_ids = list(range(num_classes))
    predictions = probabilities.argmax(axis=1)
    return {
        "loss": float(log_loss(labels, probabilities, labels=class_ids)),
        "accuracy": float((predictions == labels).mean()),
        "macro_f1": float(f1_score(labels, predictions, labels=class_ids, average="macro", zero_division=0)),
    }


def per_class_auc(labels: np.ndarray, probabilities: np.ndarray, class_ids: Sequence[int]) -> list[float | None]:
    """One-vs-rest ROC-AUC per class; None where the test split lacks that class or has nothing else."""
    from sklearn.metrics import roc_auc_score

    aucs: list[float | None] = []
    for index in class_ids:
        positive = labels == index
        if positive.all() or not positive.any():
            aucs.append(None)
        else:
            aucs.append(float(roc_auc_score(positive, probabilities[:, index])))
    return aucs


def confusion_records(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> list[dict[str, str]]:
    """One {actual, predicted} record per image: the input of DVC's confusion template."""
    return [{"actual": classes[a], "predicted": classes[p]} for a, p in zip(labels, predictions)]


def roc_records(labels: np.ndarray, probabilities: np.ndarray, index: int) -> list[dict[str, float]]:
    """One-vs-rest ROC curve points of class `index`; empty where it is undefined."""
    from sklearn.metrics import roc_curve

    positive = labels == index
    if positive.all() or not positive.any():
        return []
    fpr, tpr, _ = roc_curve(positive, probabilities[:, index])
    return [{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr)]


def write_plot_data(directory: Path, runs: dict[str, tuple[np.ndarray, np.ndarray]], classes: Sequence[str]) -> None:
    """roc.json and confusion.json of `runs` (model -> (labels, probabilities)) in one folder: records tagged with
    their model (and class), so one figure shows every model (the templates in .dvc/plots)."""
    roc, confusion = [], []
    for model, (labels, probabilities) in runs.items():
        for index, name in enumerate(classes):
            roc += [{"model": model, "class": name, **point} for point in roc_records(labels, probabilities, index)]
        confusion += [{"model": model, **record}
                      for record in confusion_records(labels, probabilities.argmax(axis=1), classes)]
    with atomic_dir(directory) as tmp:
        write_json(tmp / "roc.json", roc)
        write_json(tmp / "confusion.json", confusion)


def write_evaluation(metrics_path: Path, predictions_path: Path, confusion_path: Path, roc_path: Path, metrics: dict,
                     labels: np.ndarray, names: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> None:
    """The metrics JSON, the per-image predictions CSV, the confusion records and a folder of per-class ROC curves."""
    write_json(metrics_path, metrics)
    predictions = probabilities.argmax(axis=1)
    rounded = probabilities.round(6)
    with atomic_path(predictions_path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["name", "actual", "predicted", *(f"p_{slug(name)}" for name in classes)])
        for name, actual, predicted, row in zip(names, labels, predictions, rounded):
            writer.writerow([name, classes[actual], classes[predicted], *row])
    write_json(confusion_path, confusion_records(labels, predictions, classes))
    with atomic_dir(roc_path) as roc_tmp:
        for index, name in enumerate(classes):
            write_json(roc_tmp / f"{slug(name)}.json", roc_records(labels, probabilities, index))
