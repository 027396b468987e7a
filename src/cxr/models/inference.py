"""Model input and batched inference, shared by training, evaluation and any later prediction."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxr.io.arrays import SplitArrays


def model_input(images: torch.Tensor, image_size: int, mean: Sequence[float], std: Sequence[float],
                transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 X-rays (B, 1, H, W) -> normalised float model input (B, 3, size, size).

    Works on whole batches on the model's device. `transform` (training augmentation) acts on the
    resized [0, 1] pixels before normalisation. The input is channels_last, like the model: the faster
    convolution layout of cuDNN (with bf16) and of oneDNN on CPUs.
    """
    pixels = images.float() / 255.0
    if pixels.shape[-2:] != (image_size, image_size):
        pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    if transform is not None:
        pixels = transform(pixels)
    # Grayscale replicated to three channels so ImageNet-shaped stems and weights apply unchanged.
    pixels = pixels.expand(-1, 3, -1, -1)
    mean_t, std_t = _channel_constants(tuple(mean), tuple(std), pixels.dtype, pixels.device)
    inputs = (pixels - mean_t) / std_t
    return inputs.contiguous(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=16)
def _channel_constants(mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a tensor built from Python numbers on every batch is a blocking copy to the GPU.
    return (torch.tensor(mean, dtype=dtype, device=device).view(1, 3, 1, 1),
            torch.tensor(std, dtype=dtype, device=device).view(1, 3, 1, 1))


def to_device_format(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on `device` in channels_last, the layout model_input gives."""
    return model.to(device, memory_format=torch.channels_last)


# A split is copied to the GPU once when its images take at most this share of the free memory: a
# 10,000-image split at 299 px is 0.9 GB of uint8 pixels, a small part of one training GPU.
RESIDENT_SHARE = 0.25


class SplitBatches:
    """(uint8 images (B, 1, H, W), labels (B,)) on `device`, batch after batch of a split in a given order.

    On CUDA a split that fits (RESIDENT_SHARE of the free memory) is copied there once and each batch is one
    gather on the GPU; otherwise, and on the CPU, each batch is one read of its rows from the memory-mapped
    array. No per-image Python in either: the order is a tensor, a batch a slice of it.
    """

    def __init__(self, split: SplitArrays, batch_size: int, device: torch.device, drop_last: bool = False):
        self.batch_size, self.device, self.drop_last = batch_size, device, drop_last
        self.count = len(split)
        self.labels = torch.as_tensor(split.labels, dtype=torch.int64).to(device)
        self.images = split.images
        if device.type == "cuda" and split.images.nbytes <= RESIDENT_SHARE * torch.cuda.mem_get_info(device)[0]:
            self.images = torch.empty(split.images.shape, dtype=torch.uint8, device=device)
            for start in range(0, self.count, 1024):  # in chunks: no second host copy of the whole split
                # A copy: torch refuses to wrap the read-only memory map without a warning.
                chunk = torch.from_numpy(np.array(split.images[start:start + 1024]))
                self.images[start:start + 1024].copy_(chunk)

    def __len__(self) -> int:
        return self.batches_of(self.count)

    def batches_of(self, count: int) -> int:
        whole, rest = divmod(count, self.batch_size)
        return whole + (rest > 0 and not (self.drop_last and rest == 1))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.in_order(torch.arange(self.count))

    def in_order(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the images at `order`; a last batch of one image is dropped with drop_last (BatchNorm
        cannot train on it)."""
        order = order[:self.batches_of(len(order)) * self.batch_size]
        if isinstance(self.images, torch.Tensor):
            order = order.to(self.device, non_blocking=True)
            for chunk in order.split(self.batch_size):
                yield self.images.index_select(0, chunk)[:, None], self.labels.index_select(0, chunk)
            return
        for chunk in order.split(self.batch_size):
            images = torch.from_numpy(self.images[chunk.numpy()])[:, None]
            if self.device.type == "cuda":
                images = images.pin_memory().to(self.device, non_blocking=True)
            yield images, self.labels[chunk.to(self.labels.device)]


@torch.no_grad()
def predict_probabilities(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], image_size: int,
                          mean: Sequence[float], std: Sequence[float], device: torch.device) -> np.ndarray:
    """Softmax class probabilities (N, C), applied once here and nowhere inside the model."""
    model.eval()
    probabilities = []
    precision = mixed_precision(device)
    for images, _ in batches:
        inputs = model_input(images.to(device), image_size, mean, std)
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            logits = model(inputs)
        probabilities.append(torch.softmax(logits.float(), dim=1))
    # One copy back at the end: a copy per batch would make the GPU wait for each.
    return torch.cat(probabilities).cpu().numpy() if probabilities else np.zeros((0, 0))


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training and inference alike: bf16 where the GPU has it, else fp16; none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


