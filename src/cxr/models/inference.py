"""Model input and batched inference, shared by training, evaluation and any later prediction."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cxr.io.arrays import SplitArrays


def model_input(images: torch.Tensor, image_size: int, mean: Sequence[float], std: Sequence[float],
                transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 X-rays (B, 1, H, W) -> normalised float model input (B, 3, size, size).

    Works on whole batches on the model's device. `transform` (training augmentation) acts on the
    resized [0, 1] pixels before normalisation.
    """
    pixels = images.float() / 255.0
    if pixels.shape[-2:] != (image_size, image_size):
        pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    if transform is not None:
        pixels = transform(pixels)
    # Grayscale replicated to three channels so ImageNet-shaped stems and weights apply unchanged.
    pixels = pixels.expand(-1, 3, -1, -1)
    mean_t = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t


class SplitDataset(Dataset):
    """(uint8 image (1, H, W), label) pairs read from the split's memory-mapped arrays as batches need them.

    Conversion to model input happens per batch, on the model's device.
    """

    def __init__(self, split: SplitArrays):
        self.images, self.labels = split.images, split.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.images[index]))[None], torch.tensor(self.labels[index])


def split_dataset(split: SplitArrays) -> SplitDataset:
    return SplitDataset(split)


@torch.no_grad()
def predict_probabilities(model: nn.Module, loader: DataLoader, image_size: int, mean: Sequence[float],
                          std: Sequence[float], device: torch.device) -> np.ndarray:
    """Softmax class probabilities (N, C), applied once here and nowhere inside the model."""
    model.eval()
    batches = []
    precision = mixed_precision(device)
    for images, _ in loader:
        inputs = model_input(images.to(device), image_size, mean, std)
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            logits = model(inputs)
        batches.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(batches) if batches else np.zeros((0, 0))


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training and inference alike: bf16 where the GPU has it, else fp16; none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device is {requested!r} but no CUDA device is available; use auto or cpu")
    return torch.device(requested)
