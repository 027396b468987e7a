"""Lung masks as YOLO segmentation labels, and back.

A YOLO-seg label line is `<class> x1 y1 x2 y2 ...`, one polygon per object with coordinates normalised
to [0, 1]. Each connected lung region becomes one polygon (two lungs, two lines); holes are filled
(a lung has none: a hole in a mask is an annotation artefact) and specks are dropped.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

# Components smaller than this share of the largest one are specks, not lungs.
SPECK_FRACTION = 0.02


def lung_components(mask: np.ndarray) -> list[np.ndarray]:
    """The mask's lungs: each connected region (8-connected) with holes filled, largest first, specks dropped.

    Any non-zero pixel counts as lung, so 0/1, 0/255 and boolean masks read alike.
    """
    labels, count = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3)))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    keep = [index + 1 for index in np.argsort(-sizes, kind="stable") if sizes[index] >= SPECK_FRACTION * sizes.max()]
    return [ndimage.binary_fill_holes(labels == label) for label in keep]


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.5) -> list[np.ndarray]:
    """One (K, 2) polygon of (x, y) points per lung, in pixel-edge coordinates (pixel j spans [j, j+1]),
    simplified to `tolerance` pixels.

    Traced on the mask upsampled 2x, so the outline runs a quarter pixel inside the border pixels' outer
    edges instead of through their centres: rasterised again, it covers the mask's pixels instead of
    shaving half a pixel off all round (which costs a small lung several IoU points).
    """
    polygons = []
    for component in lung_components(mask):
        doubled = np.kron(component.astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
        contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contour = max(contours, key=cv2.contourArea)
        contour = cv2.approxPolyDP(contour, 2 * tolerance, True).reshape(-1, 2).astype(np.float64)
        if len(contour) >= 3:
            polygons.append((contour + 0.5) / 2)
    return polygons


def polygons_to_mask(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterised polygons in pixel-edge coordinates, as cv2.fillPoly draws them: pixels whose centres lie
    inside or within about half a pixel of the outline (mask_to_polygons' quarter-pixel inset makes its
    round trip exact)."""
    canvas = np.zeros(shape, dtype=np.uint8)
    scale = 16  # cv2's sub-pixel precision: 4 fractional bits
    for polygon in polygons:
        points = np.round((np.asarray(polygon, dtype=np.float64) - 0.5) * scale).astype(np.int32)
        cv2.fillPoly(canvas, [points], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def label_lines(polygons: list[np.ndarray], shape: tuple[int, int], class_id: int) -> list[str]:
    """YOLO-seg label lines: the class, then each point normalised by the image's width and height."""
    height, width = shape
    lines = []
    for polygon in polygons:
        normalised = (np.asarray(polygon) / [width, height]).clip(0, 1)
        lines.append(f"{class_id} " + " ".join(f"{value:.6f}" for value in normalised.ravel()))
    return lines


def read_label_lines(lines: list[str], shape: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    """(class, polygon in pixel-edge coordinates) of each YOLO-seg label line."""
    height, width = shape
    objects = []
    for line in lines:
        values = line.split()
        if not values:
            continue
        points = np.array(values[1:], dtype=np.float64).reshape(-1, 2) * [width, height]
        objects.append((int(values[0]), points))
    return objects
