"""Schema of the `train` section of params.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cxr.params import Section, Seed


class AugmentParams(Section):
    rotation_degrees: float = Field(ge=0, le=180)
    scale: tuple[float, float]
    translate: float = Field(ge=0, le=1)
    brightness: float = Field(ge=0, le=1)
    contrast: float = Field(ge=0, le=1)
    horizontal_flip: bool

    @field_validator("scale")
    @classmethod
    def _ordered(cls, scale: tuple[float, float]) -> tuple[float, float]:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return scale


class TrainParams(Section):
    seed: Seed  # weights initialisation, batch order and augmentation; the data and split do not depend on it
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    weight_decay: float = Field(ge=0)
    class_balance: Literal["loss", "sampler", "none"]
    num_workers: int = Field(ge=0)
    augment: AugmentParams
