"""Explain one trained classifier on its test split: which images, their maps, and the scores over them."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cxr.explain.layers import choose_target_layer
from cxr.explain.maps import class_activation_maps, masks_at, road_scores, saliency_maps, shown_pixels
from cxr.explain.params import ExplainParams
from cxr.explain.results import Explanations
from cxr.anatomy.lungs import ZONES
from cxr.explain.scores import lung_energy_fraction, lung_lift, pointing_hit, zone_involvement, zone_shares
from cxr.io.arrays import SplitArrays
from cxr.metrics.classification import slug
from cxr.metrics.intervals import finite_or_none, mean_interval, mean_or_none
from cxr.models.inference import model_input


def read_predictions(path: Path, names: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class ids, probabilities (N, C)) from the evaluate stage's predictions.csv, in `names` order."""
    with path.open(newline="") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    missing = [name for name in names if name not in rows]
    if missing:
        raise ValueError(f"{path} has no prediction for {len(missing)} test images (first: {missing[0]}): it was made "
                         f"for other data; run the evaluate stage again (`dvc repro`)")
    ordered = [rows[name] for name in names]
    predicted = np.array([classes.index(row["predicted"]) for row in ordered], dtype=np.int64)
    probabilities = np.array([[float(row[f"p_{slug(c)}"]) for c in classes] for row in ordered], dtype=np.float32)
    return predicted, probabilities


def select_images(names: np.ndarray, labels: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray,
                  num_classes: int, images_per_class: int, max_misclassified: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, sampled flags): a seeded class-balanced sample, then the misclassified images outside it,
    most confidently wrong first, up to max_misclassified.

    The sample is drawn from the sorted names of each class, so every model, and both views of one
    source, explain the same test images.
    """
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(names[members], kind="stable")]
        rng = np.random.default_rng([seed, c])
        chosen += sorted(rng.permutation(members)[:images_per_class].tolist(), key=lambda i: names[i])
    wrong = [i for i in np.flatnonzero(predictions != labels) if i not in set(chosen)]
    wrong = sorted(wrong, key=lambda i: (-probabilities[i, predictions[i]], names[i]))[:max_misclassified]
    indices = np.array(chosen + wrong, dtype=np.int64)
    return indices, np.arange(len(indices)) < len(chosen)


def explain_split(model: nn.Module, meta: dict, test: SplitArrays, predictions: np.ndarray, probabilities: np.ndarray,
                  params: ExplainParams, device: torch.device, *, resamples: int, confidence: float,
                  progress: bool = True) -> tuple[Explanations, dict]:
    """The selected test images' maps and the metrics dict (its flat JSON); intervals as evaluate's."""
    classes, size = meta["classes"], meta["image_size"]
    layer = choose_target_layer(model, size, params.min_grid)
    indices, sampled = select_images(test.names, test.labels, predictions, probabilities, len(classes),
                                     params.images_per_class, params.max_misclassified, params.seed)
    labels, predicted = test.labels[indices], predictions[indices]
    torch.manual_seed(params.seed)  # ROAD's imputation adds noise from torch's global generator
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("images", "masks", "cam", "cam_true", "saliency", "road")}
    batches = range(0, len(indices), params.batch_size)
    for start in tqdm(batches, desc=f"explain {meta['model']}/{meta['dataset']}", unit="batch", disable=None if progress else True):
        batch = indices[start:start + params.batch_size]
        raw = torch.from_numpy(np.asarray(test.images[batch]))[:, None].to(device)
        inputs = model_input(raw, size, meta["mean"], meta["std"])
        masks = masks_at(test.masks[batch], size)
        label, guess = labels[start:start + len(batch)], predicted[start:start + len(batch)]
        cam = class_activation_maps(model, layer, inputs, guess, params.method)
        cam_true = cam.copy()
        wrong = np.flatnonzero(label != guess)
        if len(wrong):
            cam_true[wrong] = class_activation_maps(model, layer, inputs[wrong], label[wrong], params.method)
        smooth = params.saliency == "smoothgrad"
        saliency = saliency_maps(model, inputs, guess, samples=params.smoothgrad_samples if smooth else 1,
                                 noise=params.smoothgrad_noise if smooth else 0.0, seed=params.seed + start)
        # ROAD enters only the sample's figures, and it is most of the stage's time: the extra misclassified
        # images skip it.
        road = np.full(len(batch), np.nan, dtype=np.float32)
        in_sample = np.flatnonzero(sampled[start:start + len(batch)])
        if len(in_sample):
            road[in_sample] = road_scores(model, inputs[in_sample], cam[in_sample], guess[in_sample], params.road_percentiles)
        parts["road"].append(road)
        parts["images"].append(shown_pixels(inputs, meta["mean"], meta["std"]))
        parts["masks"].append(masks)
        parts["cam"].append(cam)
        parts["cam_true"].append(cam_true)
        parts["saliency"].append(saliency)
    joined = {key: np.concatenate(value) if value else np.zeros((0, size, size)) for key, value in parts.items()}
    explained = Explanations(
        classes=list(classes), names=test.names[indices], labels=labels, predictions=predicted,
        probabilities=probabilities[indices], sampled=sampled, images=joined["images"], masks=joined["masks"].astype(bool),
        cam=joined["cam"], cam_true=joined["cam_true"], saliency=joined["saliency"])
    metrics = {"layer": layer.name, "grid": min(layer.grid), "method": params.method, "images": len(indices),
               "sampled": int(sampled.sum()), "misclassified": int((labels != predicted).sum()),
               "without_mask": int((~explained.has_mask).sum())}
    metrics |= explanation_metrics(explained, joined["road"], resamples=resamples, confidence=confidence, seed=params.seed)
    return explained, metrics


def explanation_metrics(explained: Explanations, road: np.ndarray, *, resamples: int,
                        confidence: float, seed: int) -> dict:
    """Flat means with bootstrap intervals over images with a lung mask (ROAD: over all).

    The headline figures and zones are over the class-balanced sample, the same test images for every
    model, so runs compare like with like; the misclassified ones (a different set per model) get their own:
    where the map of the wrong answer lies, and where the map of the right one would have.
    """
    sample = explained.sampled & explained.has_mask
    wrong = (explained.predictions != explained.labels) & explained.has_mask

    def each(score, maps: np.ndarray, which: np.ndarray) -> list[float]:
        return [score(maps[i], explained.masks[i]) for i in np.flatnonzero(which)]

    per_image = {
        "cam_lung_energy": each(lung_energy_fraction, explained.cam, sample),
        "cam_lung_lift": each(lung_lift, explained.cam, sample),
        "cam_pointing": each(pointing_hit, explained.cam, sample),
        "saliency_lung_energy": each(lung_energy_fraction, explained.saliency, sample),
        "saliency_lung_lift": each(lung_lift, explained.saliency, sample),
        "saliency_pointing": each(pointing_hit, explained.saliency, sample),
        "road": road[explained.sampled].tolist(),
        "misclassified_cam_lung_energy": each(lung_energy_fraction, explained.cam, wrong),
        "misclassified_true_cam_lung_energy": each(lung_energy_fraction, explained.cam_true, wrong),
    }
    metrics = {}
    for key, values in per_image.items():
        mean, low, high = mean_interval(np.array(values, dtype=float), resamples, confidence, seed)
        metrics |= {key: finite_or_none(mean), f"{key}_ci_low": finite_or_none(low), f"{key}_ci_high": finite_or_none(high)}
    for c, name in enumerate(explained.classes):
        members = np.flatnonzero(sample & (explained.predictions == c))
        shares = [zone_shares(explained.cam[i], explained.masks[i]) for i in members]
        involved = [zone_involvement(explained.cam[i], explained.masks[i]) for i in members]
        metrics[f"predicted_{slug(name)}"] = len(members)  # the images the zone shares below are of
        for zone in ZONES:
            metrics[f"zone_{zone}_{slug(name)}"] = mean_or_none([s[zone] for s in shares])
            metrics[f"involved_{zone}_{slug(name)}"] = mean_or_none([s[zone] for s in involved])
    return metrics
