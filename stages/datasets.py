"""Image reading, the two dataset views, the prepared split arrays and the model-input transforms.

Training, evaluation and any later prediction all go through these functions, so a model always
sees its inputs preprocessed the same way.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import TensorDataset

from stages.files import atomic_path
from stages.params import AugmentParams

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff"}


class UnreadableImage(ValueError):
    """The file is empty, corrupt or not an image; the message says which."""


def read_grayscale(path: Path) -> np.ndarray:
    """8-bit grayscale pixels of an image file, whatever its bit depth or colour mode."""
    if path.stat().st_size == 0:
        raise UnreadableImage("empty file")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                # 16-bit and float X-rays: stretch to 8 bits instead of letting PIL clip at 255; percentiles,
                # so a few burned-in or dead pixels do not squash the whole range.
                pixels = np.asarray(image, dtype=np.float64)
                low, high = np.percentile(pixels, [0.5, 99.5])
                scaled = np.clip((pixels - low) / (high - low), 0, 1) * 255 if high > low else np.zeros_like(pixels)
                pixels = np.round(scaled).astype(np.uint8)
            else:
                pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UnreadableImage(f"corrupt or not an image ({type(err).__name__}: {err})") from None
    if min(pixels.shape) < 8:
        raise UnreadableImage(f"too small ({pixels.shape[1]}x{pixels.shape[0]} px)")
    return pixels


def read_mask(path: Path) -> np.ndarray:
    """A lung mask file as booleans: above half its maximum, so JPEG ringing around 0/255 masks is not lung."""
    pixels = read_grayscale(path)
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


def _resize(pixels: np.ndarray, size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    # PIL antialiases when shrinking; crop boxes outside the image are filled with black.
    return np.asarray(Image.fromarray(pixels).crop(box).resize((size, size), Image.Resampling.BILINEAR))


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
    plus margin, resized to size x size.
    """
    mask_pixels = mask.astype(np.uint8) * 255
    if view == "full":
        height, width = image.shape
        side = max(height, width)
        box = ((width - side) // 2, (height - side) // 2, (width - side) // 2 + side, (height - side) // 2 + side)
    elif view == "lungs":
        image = np.where(mask, image, 0).astype(np.uint8)
        box = lung_box(mask, margin)
    else:
        raise ValueError(f"unknown view {view!r}")
    # The mask is resampled bilinearly and thresholded: smoother borders than nearest-neighbour.
    resized_mask = _resize(mask_pixels, size, box) >= 128
    resized_image = _resize(image, size, box)
    if view == "lungs":
        resized_image = np.where(resized_mask, resized_image, 0).astype(np.uint8)
    return resized_image, resized_mask


@dataclass(frozen=True)
class SplitArrays:
    """One split of a prepared dataset: images and lung masks stay index-aligned with labels and names."""

    images: np.ndarray  # uint8 (N, H, W)
    masks: np.ndarray  # bool (N, H, W); all False where the raw dataset had no mask
    labels: np.ndarray  # int64 (N,), index into params.classes
    names: np.ndarray  # str (N,), "<class folder>/<file name>"

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: Path) -> None:
        """A compressed .npz (np.load reads it) whose bytes depend only on the arrays.

        np.savez stamps each member with the current time, which would give DVC a new hash for the
        same data on every run and retrain every model downstream.
        """
        arrays = {"images": self.images, "masks": self.masks, "labels": self.labels, "names": self.names}
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(member, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> SplitArrays:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `dvc repro` to prepare the data first")
        with np.load(path, allow_pickle=False) as arrays:
            return cls(arrays["images"], arrays["masks"].astype(bool), arrays["labels"].astype(np.int64), arrays["names"])


def model_input(images: torch.Tensor, image_size: int, mean: Sequence[float], std: Sequence[float],
                augment: AugmentParams | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 X-rays (B, 1, H, W) -> normalised float model input (B, 3, size, size).

    Works on whole batches on the model's device, so augmentation costs almost nothing next to the
    forward and backward pass. `augment` only for training.
    """
    pixels = images.float() / 255.0
    if pixels.shape[-2:] != (image_size, image_size):
        pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    if augment is not None:
        pixels = augment_batch(pixels, augment, generator)
    # Grayscale replicated to three channels so ImageNet-shaped stems and weights apply unchanged.
    pixels = pixels.expand(-1, 3, -1, -1)
    mean_t = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t


def augment_batch(pixels: torch.Tensor, augment: AugmentParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random per-image rotation, scale, shift, brightness, contrast (and flip if enabled) on [0, 1] pixels."""
    batch = pixels.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        # Drawn on the CPU generator so runs are reproducible whatever the device.
        return (low + (high - low) * torch.rand(batch, generator=generator)).to(pixels.device)

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


def tensors(split: SplitArrays) -> TensorDataset:
    """(uint8 image (1, H, W), label) pairs; conversion to model input happens per batch."""
    return TensorDataset(torch.from_numpy(split.images).unsqueeze(1), torch.from_numpy(split.labels))


def intensity_stats(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of [0, 1] pixels, for models trained from scratch on this data."""
    # A pixel histogram instead of a float copy of the whole split, which can be many GB.
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256) / 255.0
    mean = float((counts * levels).sum() / counts.sum())
    std = float(np.sqrt((counts * (levels - mean) ** 2).sum() / counts.sum())) or 1.0
    return (mean, mean, mean), (std, std, std)
