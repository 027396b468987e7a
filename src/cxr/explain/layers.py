"""Which layer a class-activation map is taken from: the deepest whose feature map still has real resolution.

Grad-CAM's resolution is that of its layer. The last block of a CNN downsamples 32x: at 96 px that is a
3x3 grid (ResNet), at 64 px 2x2 (DenseNet161), and InceptionV3 at 96 px ends at 1x1, none of which can
say upper from lower lung. So the layer is chosen per architecture and input size, by a forward pass
that measures every stage's output: ResNet's layer4 from 224 px and layer3 from 112 px, DenseNet161's
norm5 from 224 px, denseblock3 from 112 px, denseblock2 below, InceptionV3's Mixed_7c from 299 px, ...
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Containers whose children are the network's stages (torchvision DenseNet's `features`, timm's `stages`).
_STAGE_CONTAINERS = (nn.Sequential, nn.ModuleList)


@dataclass(frozen=True)
class TargetLayer:
    name: str  # as in model.named_modules(): "layer3", "features.denseblock2", "Mixed_5d"
    module: nn.Module
    grid: tuple[int, int]  # its feature map's height and width at the model's input size


class LayerError(ValueError):
    """No layer of the model has a feature map as fine as asked for at this input size."""


def _candidates(model: nn.Module) -> dict[str, nn.Module]:
    """The backbone's stages in order: direct children, and the children of stage containers one level down."""
    found = {}
    for name, child in model.named_children():
        found[name] = child
        if isinstance(child, _STAGE_CONTAINERS):
            for sub, grandchild in child.named_children():
                found[f"{name}.{sub}"] = grandchild
    return found


def feature_grids(model: nn.Module, image_size: int) -> list[tuple[str, tuple[int, int]]]:
    """(layer name, feature-map size) of each stage with a spatial output, in the order the forward pass runs them."""
    seen: list[tuple[str, tuple[int, int]]] = []
    hooks = []
    for name, module in _candidates(model).items():
        def record(_module, _inputs, output, name=name):
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                seen.append((name, (int(output.shape[-2]), int(output.shape[-1]))))
        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    # A container whose children change resolution (DenseNet's `features`, timm's `stages`) is the whole
    # backbone, not a stage: its output is its last child's (norm5), under that child's name. One whose
    # children keep one grid (ResNet's layer3) is a stage and keeps its own name.
    child_grids: dict[str, set[tuple[int, int]]] = {}
    for name, grid in seen:
        if "." in name:
            child_grids.setdefault(name.rsplit(".", 1)[0], set()).add(grid)
    return [(name, grid) for name, grid in seen if len(child_grids.get(name, ())) <= 1]


def choose_target_layer(model: nn.Module, image_size: int, min_grid: int) -> TargetLayer:
    """The last stage the forward pass runs whose feature map is at least min_grid x min_grid."""
    grids = feature_grids(model, image_size)
    eligible = [(name, grid) for name, grid in grids if min(grid) >= min_grid]
    if not eligible:
        finest = max((min(grid) for _, grid in grids), default=0)
        raise LayerError(f"at {image_size} px no layer of this model has a feature map of at least {min_grid}x{min_grid} "
                         f"(the finest is {finest}x{finest}): raise the model's image_size or lower explain.min_grid")
    name, grid = eligible[-1]
    return TargetLayer(name, model.get_submodule(name), grid)
