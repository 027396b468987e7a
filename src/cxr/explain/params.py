"""Schema of the `explain` section of params.yaml."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cxr.params import MAX_BATCH_SIZE, Section, Seed

# pytorch-grad-cam's class-activation methods by their params.yaml names (ScoreCAM-like methods run one
# forward pass per channel: minutes per image on a CPU, so they are left out).
CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam")


class ExplainParams(Section):
    seed: Seed  # which test images of each class are explained
    method: Literal[CAM_METHODS]
    saliency: Literal["vanilla", "smoothgrad"]
    smoothgrad_samples: int = Field(ge=1)
    smoothgrad_noise: float = Field(gt=0, le=1)  # noise std as a fraction of the input's value range
    images_per_class: int = Field(ge=1)
    max_misclassified: int = Field(ge=0)
    min_grid: int = Field(ge=2)  # the CAM layer is the deepest whose feature map has at least this many cells a side
    # ROAD removes these percentages of the most (and of the least) relevant pixels
    road_percentiles: list[Annotated[int, Field(gt=0, lt=100)]] = Field(min_length=1)
    batch_size: int = Field(ge=1, le=MAX_BATCH_SIZE)
