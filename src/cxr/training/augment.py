"""X-ray-suited batch augmentation on the model's device: small rotation, scale, shift, brightness, contrast."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxr.training.params import AugmentParams


def augment_batch(pixels: torch.Tensor, augment: AugmentParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random per-image rotation, scale, shift, brightness, contrast (and flip if enabled) on [0, 1] pixels."""
    batch = pixels.shape[0]
    # Every random number of the batch drawn at once on the CPU generator, so runs are reproducible whatever the
    # device, and copied to the device in one transfer (one per draw would make the CPU wait for the GPU each
    # time). Row by row they are the numbers separate draws of one row each would give.
    rows = 7 if augment.horizontal_flip else 6
    drawn = torch.rand(rows, batch, generator=generator)
    draws = iter((drawn.pin_memory() if pixels.is_cuda else drawn).to(pixels.device, non_blocking=True))

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * next(draws)

    angle = torch.deg2rad(uniform(-augment.rotation_degrees, augment.rotation_degrees))
    scale = uniform(*augment.scale)
    # affine_grid works in [-1, 1] coordinates, so a shift of t image widths is 2t there.
    shift_x = uniform(-augment.translate, augment.translate) * 2
    shift_y = uniform(-augment.translate, augment.translate) * 2
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if augment.horizontal_flip else torch.ones_like(scale)
    # The grid maps output to input coordinates: dividing by the scale zooms in by that scale.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, shift_x], dim=1),
        torch.stack([sin * flip, cos, shift_y], dim=1),
    ], dim=1).to(pixels.dtype)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    pixels = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    brightness = uniform(1 - augment.brightness, 1 + augment.brightness).view(-1, 1, 1, 1)
    contrast = uniform(1 - augment.contrast, 1 + augment.contrast).view(-1, 1, 1, 1)
    pixels = (pixels * brightness).clamp(0, 1)
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + (pixels - mean) * contrast).clamp(0, 1)
