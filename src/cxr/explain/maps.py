"""Explanation maps of a batch: pytorch-grad-cam's class-activation methods, input-gradient saliency, ROAD.

Every map is (B, H, W) at the model's input size, non-negative, scaled to [0, 1] per image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxr.explain.layers import TargetLayer


def _cam_class(method: str):
    import pytorch_grad_cam as library

    return {
        "gradcam": library.GradCAM,
        "gradcam++": library.GradCAMPlusPlus,
        "hirescam": library.HiResCAM,
        "xgradcam": library.XGradCAM,
        "layercam": library.LayerCAM,
        "eigencam": library.EigenCAM,
        "eigengradcam": library.EigenGradCAM,
    }[method]


def _targets(classes: Sequence[int]):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return [ClassifierOutputTarget(int(c)) for c in classes]


def class_activation_maps(model: nn.Module, layer: TargetLayer, inputs: torch.Tensor, classes: Sequence[int],
                          method: str = "gradcam") -> np.ndarray:
    """(B, H, W) float32 in [0, 1]: the `method` map of each image's class in `classes`, upsampled to the input."""
    with _gradients_on(model), _cam_class(method)(model=model, target_layers=[layer.module]) as cam:
        return cam(input_tensor=inputs, targets=_targets(classes)).astype(np.float32)


def saliency_maps(model: nn.Module, inputs: torch.Tensor, classes: Sequence[int], *, samples: int = 1,
                  noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(B, H, W) float32 in [0, 1]: |d logit / d input|, largest over the colour channels (Simonyan et al. 2014).

    samples > 1 averages the gradients of copies with Gaussian noise of std `noise` x the input's value
    range added (SmoothGrad, Smilkov et al. 2017), which takes out the speckle of plain gradients.
    """
    model.eval()
    index = torch.arange(len(inputs), device=inputs.device)
    chosen = torch.as_tensor(list(classes), device=inputs.device)
    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    spread = noise * float(inputs.max() - inputs.min())
    total = torch.zeros_like(inputs)
    with _gradients_on(model):
        for _ in range(samples):
            jitter = torch.randn(inputs.shape, generator=generator, device=inputs.device) * spread if samples > 1 else 0
            noisy = (inputs + jitter).detach().requires_grad_(True)
            logits = model(noisy)
            (gradient,) = torch.autograd.grad(logits[index, chosen].sum(), noisy)
            total += gradient
    return _unit_scale((total / samples).abs().amax(dim=1).cpu().numpy())


def road_scores(model: nn.Module, inputs: torch.Tensor, maps: np.ndarray, classes: Sequence[int],
                percentiles: Sequence[int]) -> np.ndarray:
    """(B,) ROAD faithfulness (Rong et al. 2022, pytorch-grad-cam's ROADCombined): how much more the class
    probability drops when the map's most relevant pixels are removed than when its least relevant are,
    averaged over the percentiles; removed pixels are filled from their neighbours (noisy linear imputation),
    so the model is not just reacting to holes. Positive: the map points at what the model uses."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from cxr.explain.road import ROADCombined

    model.eval()
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    with torch.no_grad(), warnings.catch_warnings():
        # pytorch-grad-cam 1.5.7 hands numpy a torch tensor (np.percentile of the map); harmless, once per image.
        warnings.filterwarnings("ignore", message="__array_wrap__ must accept context", category=DeprecationWarning)
        return np.asarray(ROADCombined(percentiles=list(percentiles))(inputs, maps, targets, model), dtype=np.float32).reshape(-1)


def shown_pixels(inputs: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(B, H, W) uint8: the model inputs as the image the maps are drawn on (resized, before normalisation)."""
    shown = inputs[:, 0] * std[0] + mean[0]
    return np.round(shown.clamp(0, 1).detach().cpu().numpy() * 255).astype(np.uint8)


def masks_at(masks: np.ndarray, size: int) -> np.ndarray:
    """(B, H, W) lung masks at the maps' size (size x size), nearest neighbour so they stay binary."""
    resized = F.interpolate(torch.as_tensor(np.asarray(masks))[:, None].float(), size=(size, size), mode="nearest")
    return resized[:, 0].numpy() > 0.5


def _unit_scale(maps: np.ndarray) -> np.ndarray:
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)


class _gradients_on:
    """Parameters need requires_grad for the backward pass that CAMs and saliency take; restored afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> None:
        self.saved = [p.requires_grad for p in self.model.parameters()]
        for p in self.model.parameters():
            p.requires_grad_(True)

    def __exit__(self, *exc) -> None:
        for p, flag in zip(self.model.parameters(), self.saved):
            p.requires_grad_(flag)
        self.model.zero_grad(set_to_none=True)
