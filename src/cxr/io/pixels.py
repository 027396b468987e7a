"""What every image reader shares: the decoded image, its refusal, the size limit, 8-bit scaling, and the
perceptual hash that finds near-duplicates. No file format is read here (cxr.io.images, cxr.io.dicom)."""

from __future__ import annotations

from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image


class UnreadableImage(ValueError):
    """The file is empty, corrupt, too large or not an image; the message says which."""


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # uint8 (H, W)
    format: str  # PNG, JPEG, BMP, TIFF, DICOM
    mode: str  # the file's colour mode: L, I;16, RGB, RGBA, P, MONOCHROME1, ...
    bits: int  # bits per sample in the file


def check_size(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise UnreadableImage(f"too large: {width}x{height} px is more than the limit of {max_pixels} pixels "
                              f"(a decompression bomb? for a real X-ray in a pipeline source, raise index.max_image_pixels)")


def stretch_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """16-bit and float X-rays to 8 bits: percentiles, so a few burned-in or dead pixels do not squash the range."""
    pixels = np.asarray(pixels, dtype=np.float64)
    low, high = np.percentile(pixels, [0.5, 99.5])
    scaled = np.clip((pixels - low) / (high - low), 0, 1) * 255 if high > low else np.zeros_like(pixels)
    return np.round(scaled).astype(np.uint8)


def difference_hash(image: np.ndarray) -> np.ndarray:
    """256-bit dHash (16x16 gradient signs) packed into four uint64 words.

    64-bit hashes cannot tell chest X-rays apart: they all share one layout.
    """
    bits = imagehash.dhash(Image.fromarray(image), hash_size=16).hash.ravel()
    return np.packbits(bits).view(np.uint64)


def hash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits between packed hashes; broadcasts over leading axes."""
    return np.bitwise_count(a ^ b).sum(axis=-1)
