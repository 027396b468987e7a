"""Schemas of the `segment` section of params.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cxr.params import Classes, Device, Section, Seed

# lung: one class; diagnosis: each lung labelled with its image's class (COVID-19 / Pneumonia / Normal), as
# the original study did, so the segmenter also classifies.
LabelMode = Literal["lung", "diagnosis"]


class SegmentTrainParams(Section):
    seed: Seed  # weights initialisation, batch order and Ultralytics' augmentation
    model: str  # an Ultralytics model YAML, e.g. yolov8n-seg.yaml (built from scratch: nothing to download)
    # none: start from random weights; or the path of a .pt file (e.g. yolov8n-seg.pt) to start from.
    weights: str
    image_size: int = Field(ge=32, multiple_of=32)  # YOLO's input size (imgsz); stride 32
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)  # Ultralytics' lr0

    @field_validator("model")
    @classmethod
    def _yaml(cls, model: str) -> str:
        if not model.endswith((".yaml", ".yml")):
            raise ValueError("must be a model YAML such as yolov8n-seg.yaml; start weights go in `weights`")
        return model


class SegmentEvaluateParams(Section):
    confidence: float = Field(gt=0, lt=1)  # lung instances below this confidence are dropped
    gallery: int = Field(ge=1)  # the worst-Dice test images shown in the gallery
    images_per_class: int = Field(ge=1)  # the class-balanced sample whose attention maps are summarised by zone


# What segment_evaluate and segment_explain read: their intervals are made like the classifiers' (evaluate.*).
EVALUATION_KEYS = {"classes": Classes, "device": Device, "segment.evaluate": SegmentEvaluateParams, "evaluate.seed": int,
                   "evaluate.bootstrap_resamples": int, "evaluate.confidence_level": float}
