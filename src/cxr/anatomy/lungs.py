"""The two lungs of a lung mask and the zones radiologists report findings in (upper, middle, lower thirds;
central and peripheral halves), for one boolean (H, W) mask."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ZONES = ("upper", "middle", "lower", "central", "peripheral")


def lung_sides(mask: np.ndarray) -> list[np.ndarray]:
    """The mask split into the two lungs, image left first: its two largest connected parts when they lie
    side by side, else its halves either side of the mask's horizontal centre (lungs drawn as one region)."""
    labels, count = ndimage.label(mask)
    if count >= 2:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        first, second = (np.argsort(sizes)[::-1][:2] + 1).tolist()
        parts = [labels == first, labels == second]
        centres = [np.nonzero(part)[1].mean() for part in parts]
        left, right = parts if centres[0] < centres[1] else parts[::-1]
        if np.nonzero(left)[1].max() < np.nonzero(right)[1].min():
            return [left, right]
    columns = np.nonzero(mask)[1]
    middle = (columns.min() + columns.max()) / 2
    column = np.arange(mask.shape[1])[None, :]
    return [mask & (column < middle), mask & (column >= middle)]


def zone_masks(mask: np.ndarray) -> dict[str, np.ndarray]:
    """The lungs divided as radiologists report findings: upper / middle / lower thirds of each lung's height,
    and per row, the lateral (peripheral) and medial (central) halves of each lung's width."""
    zones = {zone: np.zeros_like(mask) for zone in ZONES}
    row = np.arange(mask.shape[0])[:, None]
    column = np.arange(mask.shape[1])[None, :]
    sides = lung_sides(mask)
    for side, lung in enumerate(sides):
        if not lung.any():
            continue
        rows = np.nonzero(lung.any(axis=1))[0]
        top, height = rows.min(), rows.max() + 1 - rows.min()
        third = (row - top) * 3 // height
        for i, zone in enumerate(("upper", "middle", "lower")):
            zones[zone] |= lung & (third == i)
        # Per row: the half of the lung's width away from the midline. Image left lung: its left half.
        lo = np.where(lung, column, mask.shape[1]).min(axis=1, keepdims=True)
        hi = np.where(lung, column, -1).max(axis=1, keepdims=True)
        halfway = (lo + hi) / 2
        lateral = (column < halfway) if side == 0 else (column > halfway)
        zones["peripheral"] |= lung & lateral
        zones["central"] |= lung & ~lateral
    return zones
