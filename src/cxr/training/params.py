"""Schema of the `train` section of params.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from cxr.params import MAX_BATCH_SIZE, Section, Seed


class AugmentParams(Section):
    rotation_degrees: float = Field(ge=0, le=180)
    scale: tuple[float, float] = Field(strict=False)  # YAML has lists, not tuples: [low, high]
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
    batch_size: int = Field(ge=1, le=MAX_BATCH_SIZE)
    weight_decay: float = Field(ge=0)
    class_balance: Literal["loss", "sampler", "none"]
    # Processes training one model together (torchrun, DistributedDataParallel): one per GPU, or CPU
    # processes; batch_size is split between them. 1: no torchrun.
    processes: int = Field(ge=1)
    augment: AugmentParams

    @model_validator(mode="after")
    def _batch_shared_by_processes(self) -> TrainParams:
        if self.batch_size % self.processes:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of processes {self.processes}: "
                             "each process trains on its equal part of every batch")
        return self
