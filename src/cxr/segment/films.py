"""Lung masks of whole raw films, from the segmenter, for views built without ground-truth masks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxr.data.views import make_view, square_box
from cxr.segment.predict import segment_lungs


def film_mask(net: nn.Module, pixels: np.ndarray, image_size: int, confidence: float, num_classes: int,
              device: torch.device | str = "cpu") -> np.ndarray:
    """The lung mask of a whole film at its own size: the film shown to the segmenter as the full view does
    (padded to a square, resized to its input), the mask probability mapped back and thresholded at 0.5."""
    height, width = pixels.shape
    square, _ = make_view(pixels, np.zeros(pixels.shape, dtype=bool), "full", image_size, 0.0)
    probability = next(segment_lungs(net, square[None], image_size, confidence, num_classes, device)).confidence_map
    side = max(height, width)
    upsampled = F.interpolate(torch.as_tensor(probability)[None, None], (side, side), mode="bilinear",
                              align_corners=False)[0, 0].numpy()
    left, top, _, _ = square_box(height, width)  # the film's corner in the square, negated
    return upsampled[-top:-top + height, -left:-left + width] > 0.5
