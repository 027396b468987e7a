"""X-ray and lung-mask files as 8-bit grayscale pixels, and the perceptual hash that finds near-duplicates."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff"}


class UnreadableImage(ValueError):
    """The file is empty, corrupt, too large or not an image; the message says which."""


def read_grayscale(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """8-bit grayscale pixels of an image file, whatever its bit depth or colour mode.

    `max_pixels` refuses images larger than that before decoding them: a small compressed file can
    claim billions of pixels (a decompression bomb) and exhaust memory.
    """
    if path.stat().st_size == 0:
        raise UnreadableImage("empty file")
    try:
        with warnings.catch_warnings(), _pil_pixel_limit(max_pixels):
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise UnreadableImage(f"too large: {image.width}x{image.height} px is more than "
                                          f"prepare.max_image_pixels ({max_pixels}); raise it if this is a real X-ray")
                image.load()
                pixels = _to_uint8(image)
    except Image.DecompressionBombError as err:
        raise UnreadableImage(f"too large: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, UnreadableImage):
            raise
        raise UnreadableImage(f"corrupt or not an image ({type(err).__name__}: {err})") from None
    if min(pixels.shape) < 8:
        raise UnreadableImage(f"too small ({pixels.shape[1]}x{pixels.shape[0]} px)")
    return pixels


@contextmanager
def _pil_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Our limit instead of PIL's global one (which refuses at open with no file name or size), while reading."""
    if max_pixels is None:
        yield
        return
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _to_uint8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float X-rays: stretch to 8 bits instead of letting PIL clip at 255; percentiles,
        # so a few burned-in or dead pixels do not squash the whole range.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = np.percentile(pixels, [0.5, 99.5])
        scaled = np.clip((pixels - low) / (high - low), 0, 1) * 255 if high > low else np.zeros_like(pixels)
        return np.round(scaled).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def read_mask(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """A lung mask file as booleans: above half its maximum, so JPEG ringing around 0/255 masks is not lung."""
    pixels = read_grayscale(path, max_pixels)
    return pixels > pixels.max() / 2 if pixels.max() > 0 else np.zeros(pixels.shape, dtype=bool)


def difference_hash(image: np.ndarray) -> np.ndarray:
    """256-bit dHash (16x16 gradient signs) packed into four uint64 words.

    64-bit hashes cannot tell chest X-rays apart: they all share one layout.
    """
    bits = imagehash.dhash(Image.fromarray(image), hash_size=16).hash.ravel()
    return np.packbits(bits).view(np.uint64)


def hash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits between packed hashes; broadcasts over leading axes."""
    return np.bitwise_count(a ^ b).sum(axis=-1)
