"""Looking inside the segmenter: where its features respond, how sure it is per pixel, whether its masks
look like lungs, where it fails, and which lung zones it covers and attends to, by diagnosis.

- Attention: Grad-CAM for the lung objects the segmenter found: the target is the sum of the class scores
  of the anchors that survived NMS (one per lung), so the map shows what supports those detections. On the
  stride-8 feature map that feeds the segmentation head's finest level (16x16 cells at 128 px). EigenCAM,
  the usual gradient-free choice for detectors, was tried first: its principal component has an arbitrary
  sign, and here it lit up the background (lung lift 0.17) as readily as the lungs.
- Confidence: per pixel, the highest mask probability of any lung instance; uncertainty: its binary
  entropy in bits (1 at p = 0.5, 0 where the model is sure). Uncertainty belongs on the lung border; the
  share of it there says whether the doubt is about the outline or about whole regions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from cxr.anatomy.lungs import ZONES
from cxr.explain.scores import lung_energy_fraction, lung_lift, zone_shares
from cxr.metrics.intervals import finite_or_none, mean_interval, mean_or_none
from cxr.metrics.classification import slug
from cxr.segment.predict import LungInstances, network_input
from cxr.segment.yolo import head_input_layer, head_outputs, kept_detections

# Pixels within this many of the true lung outline count as its border.
BORDER_PIXELS = 2


class _Predictions(nn.Module):
    """The segmentation network as pytorch-grad-cam expects it: one tensor out."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return head_outputs(self.net, batch)[0]


class _LungObjects:
    """Grad-CAM target of one image: the summed class scores of its detected lungs' anchors (without any,
    the best anchor's: what the model came closest to detecting)."""

    def __init__(self, anchors: torch.Tensor, classes: torch.Tensor, num_classes: int):
        self.anchors, self.classes, self.num_classes = anchors, classes, num_classes

    def __call__(self, output: torch.Tensor) -> torch.Tensor:  # (4 + classes + 32, anchors) of one image
        if len(self.anchors) == 0:
            return output[4:4 + self.num_classes].max()
        return output[4 + self.classes, self.anchors].sum()


def attention_maps(net: nn.Module, images: np.ndarray, image_size: int, confidence: float, num_classes: int,
                   device: torch.device | str = "cpu", batch_size: int = 16) -> np.ndarray:
    """(N, H, W) Grad-CAM maps for the detected lungs, in [0, 1], at the images' own size."""
    from pytorch_grad_cam import GradCAM
    height, width = np.asarray(images).shape[1:]
    wrapped = _Predictions(net).eval()
    frozen = [p for p in net.parameters() if not p.requires_grad]
    for parameter in frozen:  # a saved segmenter's weights are loaded frozen; Grad-CAM needs their gradients
        parameter.requires_grad_(True)
    maps = []
    try:
        with GradCAM(wrapped, target_layers=[net.model[head_input_layer(net)]]) as cam:
            for start in range(0, len(images), batch_size):
                batch = network_input(images[start:start + batch_size], image_size, device)
                with torch.no_grad():
                    predictions = wrapped(batch)
                _, kept = kept_detections(predictions, confidence, num_classes, with_anchors=True)
                kept = [anchors.long().view(-1) for anchors in kept]  # an image without detections gets a float (0, 1)
                classes = [predictions[b, 4:4 + num_classes, anchors].argmax(0) for b, anchors in enumerate(kept)]
                targets = [_LungObjects(a, c, num_classes) for a, c in zip(kept, classes)]
                grid = cam(batch, targets=targets)  # (B, S, S), min-max scaled per image
                resized = torch.nn.functional.interpolate(torch.as_tensor(grid)[:, None], (height, width),
                                                          mode="bilinear", align_corners=False)[:, 0]
                maps.append(resized.clamp(0, 1).numpy())
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)
    return np.concatenate(maps) if maps else np.zeros((0, height, width), dtype=np.float32)


def uncertainty_map(found: LungInstances) -> np.ndarray:
    """Binary entropy (bits) of the per-pixel confidence: 0 where sure (lung or not), 1 at p = 0.5."""
    p = np.clip(found.confidence_map.astype(np.float64), 1e-6, 1 - 1e-6)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).astype(np.float32)


def border_share(uncertainty: np.ndarray, truth: np.ndarray) -> float:
    """Share of the uncertainty mass within BORDER_PIXELS of the true lung outline; NaN when there is none."""
    total = float(uncertainty.sum())
    if not truth.any() or not total > 0:
        return float("nan")
    border = ndimage.binary_dilation(truth, iterations=BORDER_PIXELS) & ~ndimage.binary_erosion(truth, iterations=BORDER_PIXELS)
    return float(uncertainty[border].sum()) / total


def interpretation_metrics(attention: np.ndarray, uncertainty: np.ndarray, masks: np.ndarray, predicted: np.ndarray,
                           labels: np.ndarray, classes: Sequence[str], *, resamples: int, confidence: float,
                           seed: int) -> dict:
    """Flat metrics over the explained images. The reference mask is the ground truth where the image has
    one, else the predicted mask (then the attention figures say where the model looks in its own lungs)."""
    reference = [m if m.any() else p for m, p in zip(masks, predicted)]
    metrics: dict[str, float | int | None] = {"images": len(labels)}
    per_image = {
        "attention_lung_energy": [lung_energy_fraction(a, r) for a, r in zip(attention, reference)],
        "attention_lung_lift": [lung_lift(a, r) for a, r in zip(attention, reference)],
        "uncertainty_mean": [float(u[r | p].mean()) if (r | p).any() else float("nan")
                             for u, r, p in zip(uncertainty, reference, predicted)],
        "uncertainty_on_border": [border_share(u, m) for u, m in zip(uncertainty, masks)],
    }
    for key, values in per_image.items():
        value, low, high = mean_interval(np.array(values, dtype=float), resamples, confidence, seed)
        metrics.update({key: finite_or_none(value), f"{key}_ci_low": finite_or_none(low), f"{key}_ci_high": finite_or_none(high)})
    for index, name in enumerate(classes):
        chosen = [k for k in range(len(labels)) if labels[k] == index and reference[k].any()]
        shares = [zone_shares(attention[k], reference[k]) for k in chosen]
        for zone in ZONES:
            metrics[f"attention_zone_{zone}_{slug(name)}"] = mean_or_none([s[zone] for s in shares])
    return metrics
