"""Schema of the `evaluate` section of params.yaml."""

from __future__ import annotations

from pydantic import Field

from cxr.params import Section, Seed


class EvaluateParams(Section):
    seed: Seed  # bootstrap resampling
    batch_size: int = Field(ge=1)
    bootstrap_resamples: int = Field(ge=100)
    confidence_level: float = Field(gt=0, lt=1)
    calibration_bins: int = Field(ge=2)
