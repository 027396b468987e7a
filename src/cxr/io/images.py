"""X-ray and lung-mask files as 8-bit grayscale pixels.

Every raw file goes through `decode_image`, from bytes, so a folder and a zip archive read alike:
PNG (8 and 16 bit), JPEG/JFIF, BMP, TIFF in any colour mode, and DICOM (see cxr.io.dicom).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxr.io.pixels import DecodedImage, UnreadableImage, check_size, stretch_to_uint8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
DICOM_SUFFIXES = {".dcm", ".dicom"}


def is_dicom(name: str, data: bytes) -> bool:
    # DICOM Part 10 files carry "DICM" after a 128-byte preamble, whatever their name.
    return Path(name).suffix.lower() in DICOM_SUFFIXES or data[128:132] == b"DICM"


def decode_image(data: bytes, name: str, max_pixels: int | None = None) -> DecodedImage:
    """The 8-bit grayscale pixels of one image file's bytes, and what the file was.

    `max_pixels` refuses images larger than that before decoding them: a small compressed file can
    claim billions of pixels (a decompression bomb) and exhaust memory.
    """
    if not data:
        raise UnreadableImage("empty file")
    try:
        if is_dicom(name, data):
            from cxr.io.dicom import decode_dicom

            decoded = decode_dicom(data, max_pixels)
        else:
            decoded = _decode_pil(data, max_pixels)
    except UnreadableImage:
        raise
    except MemoryError:
        raise UnreadableImage("too large to decode in the memory available") from None
    except Exception as err:  # a crafted or broken file can fail anywhere in a decoder: it is one file's problem
        raise UnreadableImage(f"cannot be decoded ({type(err).__name__}: {err})") from None
    if min(decoded.pixels.shape) < 8:
        raise UnreadableImage(f"too small ({decoded.pixels.shape[1]}x{decoded.pixels.shape[0]} px)")
    return decoded


def _decode_pil(data: bytes, max_pixels: int | None) -> DecodedImage:
    try:
        with warnings.catch_warnings(), _pil_pixel_limit(max_pixels):
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                check_size(image.width, image.height, max_pixels)
                image.load()
                bits = {"1": 1, "I": 32, "F": 32}.get(image.mode, 16 if image.mode.startswith("I;16") else 8)
                return DecodedImage(to_uint8(image), image.format or "?", image.mode, bits)
    except Image.DecompressionBombError as err:
        raise UnreadableImage(f"too large: {err}") from None
    except UnreadableImage:
        raise
    except UnidentifiedImageError:
        raise UnreadableImage("not an image: no format this tool reads (PNG, JPEG, TIFF, BMP, DICOM) recognises it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnreadableImage(f"corrupt or not an image ({type(err).__name__}: {err})") from None


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


def to_uint8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # Instead of letting PIL clip at 255.
        return stretch_to_uint8(np.asarray(image))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels are outside the film: black, not whatever colour they happen to hold.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def read_grayscale(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """8-bit grayscale pixels of an image file, whatever its format, bit depth or colour mode."""
    return decode_image(Path(path).read_bytes(), Path(path).name, max_pixels).pixels


def mask_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """A lung mask as booleans: above half its maximum, so 0/1, 0/255 and JPEG-ringing masks all read alike."""
    return pixels > pixels.max() / 2 if pixels.max() > 0 else np.zeros(pixels.shape, dtype=bool)


def nonblack_mask(pixels: np.ndarray, threshold: int = 8) -> np.ndarray:
    """The lung mask of an already lung-segmented image: its non-black region, small specks and holes removed."""
    from scipy import ndimage

    region = ndimage.binary_opening(pixels > threshold, iterations=2)
    labels, count = ndimage.label(region)
    if count == 0:
        return region
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.02 * sizes.max()) + 1  # specks of noise are not lungs
    return ndimage.binary_fill_holes(np.isin(labels, keep))
