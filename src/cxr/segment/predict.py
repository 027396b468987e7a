"""Lung masks from a trained segmenter: per image its lung instances, the union mask and a per-pixel
confidence map (the mask probability before thresholding), at the segmenter's input size.

Inference runs the network and Ultralytics' own NMS and mask assembly steps directly instead of its
Predictor, which thresholds the masks before we can see their probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxr.segment.yolo import crop_to_boxes, head_outputs, kept_detections


@dataclass(frozen=True)
class LungInstances:
    """One image's lung instances, highest confidence first."""

    boxes: np.ndarray  # float32 (K, 4): x1, y1, x2, y2 in pixels of the input
    confidences: np.ndarray  # float32 (K,)
    classes: np.ndarray  # int64 (K,): 0 (lung), or the diagnosis in label mode `diagnosis`
    probabilities: np.ndarray  # float32 (K, H, W): each instance's mask probability, 0 outside its box

    @property
    def masks(self) -> np.ndarray:
        return self.probabilities > 0.5

    @property
    def lung_mask(self) -> np.ndarray:
        """All instances together: the predicted lungs."""
        return self.masks.any(axis=0) if len(self.confidences) else np.zeros(self.probabilities.shape[1:], dtype=bool)

    @property
    def confidence_map(self) -> np.ndarray:
        """Per pixel, the highest probability any lung instance gives it."""
        return self.probabilities.max(axis=0) if len(self.confidences) else np.zeros(self.probabilities.shape[1:], np.float32)


def network_input(images: np.ndarray, image_size: int, device: torch.device | str) -> torch.Tensor:
    """(B, 3, S, S) floats in [0, 1], as Ultralytics feeds a grey film: three equal channels, no normalisation."""
    batch = torch.as_tensor(np.array(images, dtype=np.uint8), device=device).float().div(255)[:, None]
    if batch.shape[-1] != image_size or batch.shape[-2] != image_size:
        batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return batch.expand(-1, 3, -1, -1).contiguous()


@torch.no_grad()
def segment_lungs(net: nn.Module, images: np.ndarray, image_size: int, confidence: float, num_classes: int,
                  device: torch.device | str = "cpu", batch_size: int = 32) -> Iterator[LungInstances]:
    """Lung instances of each (H, W) uint8 image, with masks at the image's own size, in order."""
    net.eval()
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start:start + batch_size])
        height, width = chunk.shape[1:]
        predictions, prototypes = head_outputs(net, network_input(chunk, image_size, device))
        kept = kept_detections(predictions, confidence, num_classes)
        scale = torch.tensor([width / image_size, height / image_size] * 2, device=predictions.device)
        for detections, protos in zip(kept, prototypes):
            boxes = detections[:, :4] * scale
            if len(detections):
                channels = protos.shape[0]
                logits = (detections[:, 6:] @ protos.float().view(channels, -1)).view(-1, *protos.shape[1:])
                logits = F.interpolate(logits[None], (height, width), mode="bilinear", align_corners=False)[0]
                probabilities = crop_to_boxes(logits.sigmoid(), boxes)
            else:
                probabilities = torch.zeros((0, height, width))
            yield LungInstances(boxes.float().cpu().numpy(), detections[:, 4].float().cpu().numpy(),
                                detections[:, 5].long().cpu().numpy(), probabilities.float().cpu().numpy())

