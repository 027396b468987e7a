"""Schemas of the `evaluate` and `cross_tests` sections of params.yaml."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, model_validator

from cxr.params import MAX_BATCH_SIZE, Section, Seed


class EvaluateParams(Section):
    seed: Seed  # bootstrap resampling
    batch_size: int = Field(ge=1, le=MAX_BATCH_SIZE)
    bootstrap_resamples: int = Field(ge=100)
    confidence_level: float = Field(gt=0, lt=1)
    calibration_bins: int = Field(ge=2)


class CrossTest(Section):
    """A model trained on one dataset, tested on another dataset's test split (another hospital, another source)."""

    trained_on: str
    tested_on: str

    @model_validator(mode="after")
    def _known(self, info: ValidationInfo) -> CrossTest:
        datasets = (info.context or {}).get("datasets")
        if datasets is not None and self.trained_on not in datasets:
            raise ValueError(f"trained_on {self.trained_on!r} is not in datasets {datasets}: no model is trained on it")
        if self.trained_on == self.tested_on:
            raise ValueError(f"tested_on {self.tested_on!r} is the dataset the model was trained on; evaluate covers that")
        return self


CrossTests = list[CrossTest]
