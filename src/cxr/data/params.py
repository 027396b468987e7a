"""Schemas of the `dataset.<name>` and `prepare` sections of params.yaml."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from cxr.params import Section, Seed


class DatasetParams(Section):
    raw_dir: str
    view: Literal["full", "lungs"]
    class_folders: dict[str, str | None]
    patient_id_pattern: str | None = None

    @field_validator("patient_id_pattern")
    @classmethod
    def _one_group(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                groups = re.compile(pattern).groups
            except re.error as err:
                raise ValueError(f"not a valid regular expression: {err}") from None
            if groups < 1:
                raise ValueError("needs a group, e.g. '^(p\\d+)_', whose text is the patient id")
        return pattern

    @model_validator(mode="after")
    def _folders_match_classes(self, info: ValidationInfo) -> DatasetParams:
        classes = (info.context or {}).get("classes")
        if classes is None:
            return self
        for folder, label in self.class_folders.items():
            if not label:
                raise ValueError(f"class_folders: folder {folder!r} is mapped to nothing; map it to one of {classes} or remove it")
            if label not in classes:
                raise ValueError(f"class_folders: folder {folder!r} is mapped to {label!r}, which is not in classes {classes}")
        for label in classes:
            if label not in self.class_folders.values():
                raise ValueError(f"class_folders: no folder is mapped to class {label!r}")
        return self


class SplitParams(Section):
    train: float = Field(gt=0, lt=1)
    val: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _adds_up(self) -> SplitParams:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + val + test = {total:g}, must add up to 1")
        return self


class PrepareParams(Section):
    seed: Seed  # orders the groups before they are dealt into splits
    image_size: int = Field(ge=32)
    lung_margin: float = Field(ge=0, le=1)
    split: SplitParams
    near_duplicate_distance: int = Field(ge=0, le=256)
    max_image_pixels: int = Field(ge=64 * 64)  # larger images are skipped: decompression bombs, not X-rays
