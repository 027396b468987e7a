"""Schemas of the `segment` section of params.yaml."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from cxr.params import MAX_BATCH_SIZE, MAX_IMAGE_SIDE, Section, Seed

# lung: one class; diagnosis: each lung labelled with its image's class (COVID-19 / Pneumonia / Normal), as
# the original study did, so the segmenter also classifies.
LabelMode = Literal["lung", "diagnosis"]


class SegmentTrainParams(Section):
    seed: Seed  # weights initialisation, batch order and Ultralytics' augmentation
    model: str  # an Ultralytics YOLOv8 segmentation YAML, e.g. yolov8n-seg.yaml (built from scratch: nothing to download)
    # none: start from random weights; or the path of a .pt file (e.g. yolov8n-seg.pt) to start from.
    weights: str
    image_size: int = Field(ge=32, le=MAX_IMAGE_SIDE, multiple_of=32)  # YOLO's input size (imgsz); stride 32
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1, le=MAX_BATCH_SIZE)
    lr: float = Field(gt=0)  # Ultralytics' lr0

    @field_validator("model")
    @classmethod
    def _yaml(cls, model: str) -> str:
        # Inference and Grad-CAM read the YOLOv8 Segment head's outputs; other families' heads differ.
        if not re.fullmatch(r"yolov8[nsmlx]?-seg\.ya?ml", model):
            raise ValueError("must be a YOLOv8 segmentation YAML such as yolov8n-seg.yaml (yolov8n/s/m/l/x-seg.yaml); "
                             "start weights go in `weights`")
        return model


Confidence = Annotated[float, Field(gt=0, lt=1)]  # segment.confidence: lung instances below it are dropped
GallerySize = Annotated[int, Field(ge=1)]  # segment.gallery: the worst test masks shown

