"""Prepared split arrays (`train.npz`, `val.npz`, `test.npz`): written by prepare, read by training and evaluation."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.io.files import atomic_path


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


def intensity_stats(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of [0, 1] pixels, for models trained from scratch on this data."""
    # A pixel histogram instead of a float copy of the whole split, which can be many GB.
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256) / 255.0
    mean = float((counts * levels).sum() / counts.sum())
    std = float(np.sqrt((counts * (levels - mean) ** 2).sum() / counts.sum())) or 1.0
    return (mean, mean, mean), (std, std, std)
