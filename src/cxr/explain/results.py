"""The explained test images of one model and dataset, with their maps, as one compressed file, and the folder the
explain stage writes it to beside one panel per class (explanation_file).

The explain stage writes it; the panels and the report's cross-model figure draw from it. Everything is at
the model's input size, in the frame the model saw (the lungs view's crop for lungs models).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from cxr.io.arrays import save_npz
from cxr.metrics.classification import slug


def explanation_file(folder: Path, class_name: str | None = None) -> Path:
    """A file of an explain stage's folder: maps.npz, the explained images and their maps (Explanations.load), or
    with `class_name` that class's panel (figures.write_class_panels); the explain stage writes them, the report
    reads them."""
    if class_name is None:
        return Path(folder) / "maps.npz"
    return Path(folder) / f"panel_{slug(class_name)}.png"


@dataclass
class Explanations:
    classes: list[str]
    names: np.ndarray  # (N,) str: the images' names in the dataset
    labels: np.ndarray  # (N,) int: true class
    predictions: np.ndarray  # (N,) int
    probabilities: np.ndarray  # (N, C) float32 softmax
    sampled: np.ndarray  # (N,) bool: in the class-balanced sample (False: added because misclassified)
    images: np.ndarray  # (N, S, S) uint8: the model's input before normalisation
    masks: np.ndarray  # (N, S, S) bool: lung mask; all False where the image has none
    cam: np.ndarray  # (N, S, S) float32 in [0, 1]: class-activation map of the predicted class
    cam_true: np.ndarray  # (N, S, S) float32 in [0, 1]: of the true class (equal to cam where correct)
    saliency: np.ndarray  # (N, S, S) float32 in [0, 1]: input-gradient saliency of the predicted class

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def has_mask(self) -> np.ndarray:
        """(N,) bool: whether the image has a lung mask."""
        return self.masks.reshape(len(self.masks), -1).any(axis=1)

    def save(self, path: Path) -> None:
        """Maps stored as uint8 (1/255 steps are far below what a heat map shows), the rest as is."""
        arrays = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ("cam", "cam_true", "saliency"):
                value = np.round(np.clip(value, 0, 1) * 255).astype(np.uint8)
            arrays[field.name] = np.asarray(value)
        save_npz(path, arrays)

    @classmethod
    def load(cls, path: Path) -> Explanations:
        with np.load(path, allow_pickle=False) as stored:
            values = {name: stored[name] for name in stored.files}
        for name in ("cam", "cam_true", "saliency"):
            values[name] = values[name].astype(np.float32) / 255
        values["classes"] = [str(c) for c in values["classes"]]
        return cls(**values)
