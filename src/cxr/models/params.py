"""Schema of a `model.<name>` section of params.yaml."""

from __future__ import annotations

from pydantic import Field, model_validator

from cxr.models.registry import check_arch, min_input_size
from cxr.params import MAX_IMAGE_SIDE, Section


class ModelParams(Section):
    arch: str  # a torchvision classifier (resnet18, densenet161, ...) or timm/<name>
    image_size: int = Field(le=MAX_IMAGE_SIDE)
    lr: float = Field(gt=0)
    weights: str = "none"  # none (random init, offline), imagenet (download) or a path to a weights file

    @model_validator(mode="after")
    def _known_arch_and_size(self) -> ModelParams:
        check_arch(self.arch)
        smallest = min_input_size(self.arch)
        if self.image_size < smallest:
            raise ValueError(f"image_size {self.image_size} is too small for {self.arch}: it needs at least {smallest} px")
        return self
