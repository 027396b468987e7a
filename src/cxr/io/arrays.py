"""Prepared split arrays (`<split>/images.npy`, `masks.npy`, `labels.npy`, `names.npy`): written by prepare,
read by training and evaluation.

Plain .npy files, memory-mapped when loaded: training and evaluation read the batches they need and
never hold a second copy of a split, so a split larger than memory still trains. np.save stamps no
time, so the same arrays give the same bytes (and DVC the same hash, retraining nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.io.files import atomic_dir


def split_dir(prepared: Path, split: str) -> Path:
    """One split's arrays in a prepared dataset's folder, beside its view.json."""
    return Path(prepared) / split


@dataclass(frozen=True)
class SplitArrays:
    """One split of a prepared dataset: images and lung masks stay index-aligned with labels and names."""

    images: np.ndarray  # uint8 (N, H, W)
    masks: np.ndarray  # bool (N, H, W); all False where the raw dataset had no mask
    labels: np.ndarray  # int64 (N,), index into params.classes
    names: np.ndarray  # str (N,), the image's path in its raw source

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, folder: Path) -> None:
        with SplitWriter(folder, len(self), self.images.shape[1:]) as writer:
            for index in range(len(self)):
                writer.put(index, self.images[index], self.masks[index])
            writer.finish(self.labels, self.names)

    @classmethod
    def load(cls, folder: Path) -> SplitArrays:
        if not (folder / "labels.npy").exists():
            raise FileNotFoundError(f"{folder} not found: run `dvc repro` to prepare the data first")

        def array(name: str, mmap: bool) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)

        return cls(array("images", True), array("masks", True), array("labels", False).astype(np.int64),
                   array("names", False))


class SplitWriter:
    """Appends a split's images and masks to their .npy files in order, so preparing never holds a whole
    split in memory (written, not memory-mapped: mapped pages would count as the writer's memory)."""

    def __init__(self, folder: Path, count: int, shape: tuple[int, ...]):
        self.folder, self.count, self.shape = folder, count, tuple(shape)

    def __enter__(self) -> SplitWriter:
        self._context = atomic_dir(self.folder)
        self._tmp = self._context.__enter__()
        self._written = 0
        self._files = {}
        for name, dtype in (("images", np.uint8), ("masks", np.bool_)):
            handle = (self._tmp / f"{name}.npy").open("wb")
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                      "shape": (self.count, *self.shape)}
            np.lib.format.write_array_header_1_0(handle, header)  # the header np.save writes
            self._files[name] = (handle, dtype)
        return self

    def put(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        if index != self._written or image.shape != self.shape or mask.shape != self.shape:
            raise ValueError(f"split arrays are written in order at {self.shape}: got #{index} at {image.shape}")
        for name, array in (("images", image), ("masks", mask)):
            handle, dtype = self._files[name]
            handle.write(np.ascontiguousarray(array, dtype=dtype).tobytes())
        self._written += 1

    def finish(self, labels: np.ndarray, names: np.ndarray) -> None:
        if self._written != self.count:
            raise ValueError(f"{self.folder}: {self._written} of {self.count} images written")
        np.save(self._tmp / "labels.npy", np.asarray(labels, dtype=np.int64), allow_pickle=False)
        np.save(self._tmp / "names.npy", np.asarray(names, dtype=str), allow_pickle=False)

    def __exit__(self, *exc: object) -> bool | None:
        for handle, _ in self._files.values():
            handle.close()
        return self._context.__exit__(*exc)


def intensity_stats(images: np.ndarray, chunk: int = 256) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of [0, 1] pixels, for models trained from scratch on this data."""
    # A pixel histogram, a chunk of images at a time: no float (or int64) copy of a split that may be many GB.
    counts = np.zeros(256, dtype=np.float64)
    for start in range(0, len(images), chunk):
        counts += np.bincount(np.asarray(images[start:start + chunk]).ravel(), minlength=256)
    levels = np.arange(256) / 255.0
    mean = float((counts * levels).sum() / counts.sum())
    std = float(np.sqrt((counts * (levels - mean) ** 2).sum() / counts.sum())) or 1.0
    return (mean, mean, mean), (std, std, std)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed (np.load reads it), but the same arrays give the same bytes.

    numpy stamps each member with the current time, which would give an unchanged output a new DVC hash.
    """
    import io
    import zipfile

    from cxr.io.files import atomic_path

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue(),
                             compress_type=zipfile.ZIP_DEFLATED)
