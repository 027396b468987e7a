"""The segmenter on one dataset's test split: per image Dice, IoU and anatomical checks; over the split
means with bootstrap intervals, mask mAP, failure counts and, in label mode `diagnosis`, its classification.

Images whose dataset has no lung mask are scored by the anatomical checks only (coverage statistics):
nothing to compare against, but an empty, one-lung or off-centre mask is still a failure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr.anatomy.lungs import ZONES
from cxr.metrics.intervals import finite_or_none, mean_interval, mean_or_none
from cxr.io.arrays import SplitArrays
from cxr.metrics.classification import classification_metrics, slug
from cxr.segment.labels import lung_components
from cxr.segment.predict import LungInstances
from cxr.segment.scores import dice, instance_matches, iou, mask_average_precision, mask_checks, zone_recall

FAILURES = ("empty", "more_than_two", "touches_border")


def image_record(name: str, label: str, found: LungInstances, truth: np.ndarray, view: str, classes: Sequence[str],
                 label_mode: str) -> dict:
    """One row of predictions.csv: the image's scores, checks and (label mode `diagnosis`) predicted class."""
    predicted = found.lung_mask
    has_truth = bool(truth.any())
    record = {"name": name, "label": label, "has_truth": has_truth,
              "dice": dice(predicted, truth) if has_truth else float("nan"),
              "iou": iou(predicted, truth) if has_truth else float("nan"),
              "instances": len(found.confidences),
              "top_confidence": float(found.confidences[0]) if len(found.confidences) else 0.0,
              **mask_checks(predicted, view)}
    if label_mode == "diagnosis":
        record["predicted"] = classes[int(diagnosis_probabilities(found, len(classes)).argmax())]
    return record


def diagnosis_probabilities(found: LungInstances, num_classes: int) -> np.ndarray:
    """Per class, the most confident lung instance of that class, normalised to sum to 1 (uniform when none)."""
    scores = np.zeros(num_classes)
    for confidence, cls in zip(found.confidences, found.classes):
        scores[int(cls)] = max(scores[int(cls)], float(confidence))
    return scores / scores.sum() if scores.sum() > 0 else np.full(num_classes, 1.0 / num_classes)


def segmentation_metrics(test: SplitArrays, found: list[LungInstances], records: list[dict], classes: Sequence[str],
                         label_mode: str, *, resamples: int, level: float, seed: int, calibration_bins: int) -> dict:
    """The flat metrics of one test split (see the module docstring): intervals by percentile bootstrap as the
    classifiers' (evaluate's resamples, level and seed); null where there is nothing to average (JSON has no NaN)."""
    labels = np.asarray(test.labels)
    metrics: dict[str, float | int | None] = {"images": len(records),
                                             "images_with_truth": sum(r["has_truth"] for r in records)}

    def mean(key: str, rows: list[dict]) -> float | None:
        return mean_or_none([float(r[key]) for r in rows])

    for key in ("dice", "iou"):
        value, low, high = mean_interval(np.array([r[key] for r in records], dtype=float), resamples, level, seed)
        metrics.update({key: finite_or_none(value), f"{key}_ci_low": finite_or_none(low), f"{key}_ci_high": finite_or_none(high)})
    metrics.update(_mask_ap(test, found, labels, label_mode, np.ones(len(labels), dtype=bool)))
    for failure in FAILURES:
        metrics[failure] = int(sum(r[failure] for r in records))
    metrics["two_lungs"] = finite_or_none(float(np.mean([r["components"] == 2 for r in records]))) if records else None
    for key in ("plausible", "side_ratio", "area_fraction"):
        metrics[key] = mean(key, records)
    for index, name in enumerate(classes):
        key = slug(name)
        rows = [r for r, label in zip(records, labels) if label == index]
        metrics[f"dice_{key}"], metrics[f"iou_{key}"] = mean("dice", rows), mean("iou", rows)
        metrics[f"plausible_{key}"] = mean("plausible", rows)
        subset = _mask_ap(test, found, labels, label_mode, labels == index)
        metrics[f"mask_map50_{key}"], metrics[f"mask_map50_95_{key}"] = subset["mask_map50"], subset["mask_map50_95"]
        recalls = [zone_recall(f.lung_mask, np.asarray(test.masks[i])) for i, f in enumerate(found) if labels[i] == index]
        for zone in ZONES:
            metrics[f"zone_recall_{zone}_{key}"] = mean_or_none([r[zone] for r in recalls if r])
    if label_mode == "diagnosis":
        probabilities = np.stack([diagnosis_probabilities(f, len(classes)) for f in found])
        diagnosis = classification_metrics(labels, probabilities, classes, calibration_bins=calibration_bins,
                                           bootstrap_resamples=resamples, confidence_level=level, seed=seed)
        metrics.update({f"diagnosis_{key}": value for key, value in diagnosis.items()})
    return metrics


def _mask_ap(test: SplitArrays, found: list[LungInstances], labels: np.ndarray, label_mode: str,
             chosen: np.ndarray) -> dict[str, float]:
    matches, confidences, classes, truth_classes = [], [], [], []
    for index in np.flatnonzero(chosen):
        truth = np.asarray(test.masks[index])
        if not truth.any():
            continue
        lungs = lung_components(truth)
        truth_class = 0 if label_mode == "lung" else int(labels[index])
        truth_masks = np.stack(lungs) if lungs else np.zeros((0, *truth.shape), dtype=bool)
        classes_of_truth = np.full(len(lungs), truth_class)
        instances = found[index]
        matches.append(instance_matches(instances.masks, instances.classes, truth_masks, classes_of_truth))
        confidences.append(instances.confidences)
        classes.append(instances.classes)
        truth_classes.append(classes_of_truth)
    ap = mask_average_precision(matches, confidences, classes, truth_classes)
    return {"mask_map50": finite_or_none(ap["map50"]), "mask_map50_95": finite_or_none(ap["map50_95"])}


def write_records(path, records: list[dict]) -> None:
    """predictions.csv: one row per test image, floats rounded to 6 digits (stable bytes across platforms),
    an empty cell where a figure is undefined (Dice without a true mask)."""
    import csv

    from cxr.io.files import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["name"], lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({key: ("" if np.isnan(value) else round(value, 6)) if isinstance(value, float) else value
                             for key, value in record.items()})


def read_records(path, names: np.ndarray) -> list[dict]:
    """predictions.csv back as write_records had the dicts, refused unless its rows are the test split's images
    in order."""
    import csv

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the segmenter's evaluation first (`dvc repro`)")
    with path.open(newline="") as handle:
        records = [{column: record_cell(column, text) for column, text in row.items()} for row in csv.DictReader(handle)]
    if [record["name"] for record in records] != [str(name) for name in names]:
        raise ValueError(f"{path} does not list this test split's images: rerun the segmenter's evaluation (`dvc repro`)")
    return records


def record_cell(column: str, text: str) -> str | bool | int | float:
    """One cell of predictions.csv as image_record made it: text (a file may be called "NA"), the true-mask flag,
    the instance count, or a figure (empty where undefined: NaN)."""
    if column in ("name", "label", "predicted"):
        return text
    if column == "has_truth":
        return text == "True"
    if column == "instances":
        return int(text)
    return float(text) if text else float("nan")


def worst_first(records: list[dict]) -> list[int]:
    """Indices of the records, worst mask first: lowest Dice; without a true mask, implausible and least
    confident first."""
    def badness(index: int) -> tuple:
        record = records[index]
        dice_value = record["dice"]
        if dice_value == dice_value:  # not NaN
            return (0, dice_value, record["name"])
        return (1, record["plausible"], record["top_confidence"], record["name"])
    return sorted(range(len(records)), key=badness)
