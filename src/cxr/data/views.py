"""The views of one X-ray: the whole film, the lungs only (black elsewhere, cropped to the lungs), or everything
but the lungs (the whole film with the lungs blacked out: what is left to learn from without looking at a lung).

Preparation and any later prediction go through `make_view`, so a model always sees its inputs made
the same way.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


# Views that need a lung mask: images without a usable one are skipped.
MASKED_VIEWS = ("lungs", "outside")


def _resize(pixels: np.ndarray, size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    # PIL antialiases when shrinking; crop boxes outside the image are filled with black.
    return np.asarray(Image.fromarray(pixels).crop(box).resize((size, size), Image.Resampling.BILINEAR))


def fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask stored at another size than its image (e.g. 256-px masks of 299-px images), resized to it.

    Nearest neighbour, so the mask stays binary and no lung border is invented.
    """
    if mask.shape == shape:
        return mask
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(resized) > 0


def same_aspect(a: tuple[int, int], b: tuple[int, int], tolerance: float = 0.01) -> bool:
    return abs(a[0] / a[1] - b[0] / b[1]) <= tolerance * (a[0] / a[1])


def square_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The full view's (left, top, right, bottom) box: the film centred in a square of its longer side
    (negative or beyond-the-edge coordinates are the black padding)."""
    side = max(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def lung_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """Square (left, top, right, bottom) box around the lungs, widened by `margin` of its side."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    # A square box keeps the aspect ratio when resized to the square model input.
    side = max(bottom - top, right - left) * (1 + 2 * margin)
    centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
    half = side / 2
    return (round(centre_x - half), round(centre_y - half), round(centre_x + half), round(centre_y + half))


def make_view(image: np.ndarray, mask: np.ndarray, view: str, size: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The stored form of one X-ray and its lung mask, kept pixel-aligned.

    full: the whole image, padded with black to a square (no stretching), resized to size x size.
    lungs: everything outside the lung mask set to black, cropped to the lungs' square bounding box
    plus margin, resized to size x size. An empty mask (a segmenter that found no lungs) gives a black image:
    nothing of the film is left to classify, and that is what the view must show.
    outside: the full view with the lungs set to black (the returned mask still marks where they were).
    """
    if view == "lungs" and not mask.any():
        return np.zeros((size, size), dtype=np.uint8), np.zeros((size, size), dtype=bool)
    mask_pixels = mask.astype(np.uint8) * 255
    if view == "full":
        box = square_box(*image.shape)
    elif view == "lungs":
        image = np.where(mask, image, 0).astype(np.uint8)
        box = lung_box(mask, margin)
    elif view == "outside":
        image = np.where(mask, 0, image).astype(np.uint8)
        box = square_box(*image.shape)
    else:
        raise ValueError(f"unknown view {view!r}")
    # The mask is resampled bilinearly and thresholded: smoother borders than nearest-neighbour.
    resized_mask = _resize(mask_pixels, size, box) >= 128
    resized_image = _resize(image, size, box)
    # Blacked out again after resizing, so no pixel of the other side blends in across the lung border.
    if view == "lungs":
        resized_image = np.where(resized_mask, resized_image, 0).astype(np.uint8)
    elif view == "outside":
        resized_image = np.where(resized_mask, 0, resized_image).astype(np.uint8)
    return resized_image, resized_mask
