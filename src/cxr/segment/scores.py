"""How good a lung mask is: against the ground truth (Dice, IoU, mask AP) and, where there is none, against
anatomy (two lungs of similar size, a plausible share of the image, away from the image border).
"""

from __future__ import annotations

import numpy as np

from cxr.anatomy.lungs import lung_sides
from cxr.segment.yolo import average_precision, mask_overlaps, matches_at
from cxr.segment.labels import lung_components

# Anatomical plausibility of a predicted lung mask. The lungs view crops to the lungs (they fill about half
# the frame); a whole film shows them on about a quarter of it (0.15-0.45 in the Kaggle and Montgomery masks).
AREA_RANGE = {"full": (0.08, 0.6), "lungs": (0.25, 0.9)}
# Image left (the patient's right) lung over the image right one: about 1.1-1.2 in adults (the heart sits left);
# outside 0.5-2 one lung is mostly missing.
SIDE_RATIO_RANGE = (0.5, 2.0)
# The mask's centroid, as a fraction of the image's width and height.
CENTRE_X_RANGE, CENTRE_Y_RANGE = (0.3, 0.7), (0.25, 0.75)


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """2|P∩T| / (|P| + |T|); 1.0 when both are empty (nothing to find, nothing found). Non-zero is lung."""
    predicted, truth = np.asarray(predicted) > 0, np.asarray(truth) > 0
    total = int(predicted.sum()) + int(truth.sum())
    return 2.0 * int((predicted & truth).sum()) / total if total else 1.0


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """|P∩T| / |P∪T|; 1.0 when both are empty. Non-zero is lung."""
    predicted, truth = np.asarray(predicted) > 0, np.asarray(truth) > 0
    union = int((predicted | truth).sum())
    return int((predicted & truth).sum()) / union if union else 1.0


def mask_checks(mask: np.ndarray, view: str) -> dict[str, float]:
    """Anatomical checks of one predicted lung mask (no ground truth needed).

    components: lung regions after specks are dropped; side_ratio: image-left over image-right lung area
    (NaN without two lungs); area_fraction: the lungs' share of the image; centre_x/centre_y: the mask's
    centroid as a fraction of width and height; empty, more_than_two, touches_border: failure flags;
    plausible: two lungs, side ratio, area and centre all within their ranges.
    """
    mask = np.asarray(mask) > 0
    components = lung_components(mask)
    area = float(mask.mean())
    if not mask.any():
        return {"components": 0.0, "side_ratio": float("nan"), "area_fraction": 0.0, "centre_x": float("nan"),
                "centre_y": float("nan"), "empty": 1.0, "more_than_two": 0.0, "touches_border": 0.0, "plausible": 0.0}
    rows, columns = np.nonzero(mask)
    centre_x, centre_y = columns.mean() / mask.shape[1], rows.mean() / mask.shape[0]
    side_ratio = float("nan")
    if len(components) >= 2:
        left, right = lung_sides(components[0] | components[1])
        side_ratio = float(left.sum()) / float(right.sum()) if right.any() else float("nan")
    touches = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    checks = {"components": float(len(components)), "side_ratio": side_ratio, "area_fraction": area,
              "centre_x": float(centre_x), "centre_y": float(centre_y), "empty": 0.0,
              "more_than_two": float(len(components) > 2), "touches_border": float(touches)}
    return checks | {"plausible": float(not implausible_reasons(checks, view))}


def implausible_reasons(checks: dict[str, float], view: str) -> list[str]:
    """What makes a mask fail `mask_checks`' plausible flag, in words (empty for a plausible mask)."""
    if checks.get("empty"):
        return ["no lungs found"]
    reasons = []
    if checks["components"] != 2:
        count = int(checks["components"])
        reasons.append(f"{count} lung region{'' if count == 1 else 's'} instead of 2")
    elif not SIDE_RATIO_RANGE[0] <= checks["side_ratio"] <= SIDE_RATIO_RANGE[1]:
        reasons.append(f"one lung {checks['side_ratio']:.2f} times the other's area")
    low, high = AREA_RANGE[view]
    if not low <= checks["area_fraction"] <= high:
        reasons.append(f"lungs cover {checks['area_fraction']:.0%} of the image (expected {low:.0%}-{high:.0%})")
    if not (CENTRE_X_RANGE[0] <= checks["centre_x"] <= CENTRE_X_RANGE[1]
            and CENTRE_Y_RANGE[0] <= checks["centre_y"] <= CENTRE_Y_RANGE[1]):
        reasons.append("off-centre")
    if checks["touches_border"]:
        reasons.append("touches the image border")
    return reasons


def zone_recall(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Per lung zone of the ground truth (cxr.explain.scores.zone_masks), the share of its pixels segmented:
    where the segmenter misses lung (e.g. dense lower-zone opacities in COVID-19). NaN for an empty zone."""
    from cxr.anatomy.lungs import zone_masks

    if not truth.any():
        return {}
    return {zone: float((predicted & region).sum()) / float(region.sum()) if region.any() else float("nan")
            for zone, region in zone_masks(truth).items()}


def instance_matches(instance_masks: np.ndarray, instance_classes: np.ndarray, truth_masks: np.ndarray,
                     truth_classes: np.ndarray) -> np.ndarray:
    """(K, 10) bool: whether each predicted instance (highest confidence first) matches a ground-truth lung
    of its class at IoU 0.50, 0.55, ..., 0.95, each ground truth matched once: COCO's mask AP matching,
    through Ultralytics' own matcher."""
    import torch

    thresholds = torch.linspace(0.5, 0.95, 10)
    if len(instance_masks) == 0:
        return np.zeros((0, 10), dtype=bool)
    if len(truth_masks) == 0:
        return np.zeros((len(instance_masks), 10), dtype=bool)
    overlaps = mask_overlaps(torch.as_tensor(truth_masks.reshape(len(truth_masks), -1), dtype=torch.float32),
                             torch.as_tensor(instance_masks.reshape(len(instance_masks), -1), dtype=torch.float32))
    return matches_at(thresholds, torch.as_tensor(instance_classes), torch.as_tensor(truth_classes), overlaps)


def mask_average_precision(matches: list[np.ndarray], confidences: list[np.ndarray], classes: list[np.ndarray],
                           truth_classes: list[np.ndarray]) -> dict[str, float]:
    """Mask mAP50 and mAP50-95 over images by Ultralytics' ap_per_class. From the detections above the
    evaluation's confidence threshold: `yolo val` keeps all down to 0.001, which extends the precision-recall
    curve and can only add to its figure."""
    truth = np.concatenate(truth_classes) if truth_classes else np.zeros(0)
    if len(truth) == 0:
        return {"map50": float("nan"), "map50_95": float("nan")}
    tp = np.concatenate(matches) if matches else np.zeros((0, 10), dtype=bool)
    conf = np.concatenate(confidences) if confidences else np.zeros(0)
    predicted = np.concatenate(classes) if classes else np.zeros(0)
    if len(tp) == 0:
        return {"map50": 0.0, "map50_95": 0.0}
    ap = average_precision(tp, conf, predicted, truth)  # (classes present, 10 thresholds)
    return {"map50": float(ap[:, 0].mean()), "map50_95": float(ap.mean())}


def summarise_checks(checks: list[dict[str, float]]) -> dict[str, float | int]:
    """The anatomical checks of many masks: failure counts and the shares and means a data report shows."""
    if not checks:
        return {"masks": 0}
    def mean(key: str) -> float:
        values = np.array([c[key] for c in checks], dtype=float)
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else float("nan")
    return {"masks": len(checks), "plausible": mean("plausible"), "two_lungs": float(np.mean([c["components"] == 2 for c in checks])),
            "empty": int(sum(c["empty"] for c in checks)), "more_than_two": int(sum(c["more_than_two"] for c in checks)),
            "touches_border": int(sum(c["touches_border"] for c in checks)), "side_ratio": mean("side_ratio"),
            "area_fraction": mean("area_fraction")}
