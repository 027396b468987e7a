"""Schemas of the `source.<name>`, `index`, `dataset.<name>` and `prepare` sections of params.yaml."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from cxr.params import MAX_IMAGE_SIDE, Section, Seed

Layout = Literal["auto", "radiography", "covid-qu-ex", "kermany", "study", "study-segmented", "class-folders"]


class SourceParams(Section):
    """One downloaded collection, as it came (folder or zip)."""

    path: str
    layout: Layout = "auto"
    # Raw class (folder) name -> class, or null to drop it; merged over cxr.data.layouts.DEFAULT_CLASS_MAP.
    class_map: dict[str, str | None] = Field(default_factory=dict)
    # Regex on the file name whose group 1 is the patient id; "layout": the layout's default; null: unknown.
    patient_id_pattern: str | None = "layout"
    # Keep the source's own train/val/test folders (COVID-QU-Ex, Kermany) instead of our grouped split.
    own_split: bool = False

    @field_validator("patient_id_pattern")
    @classmethod
    def _one_group(cls, pattern: str | None) -> str | None:
        if pattern is not None and pattern != "layout":
            try:
                groups = re.compile(pattern).groups
            except re.error as err:
                raise ValueError(f"not a valid regular expression: {err}") from None
            if groups < 1:
                raise ValueError("needs a group, e.g. '^(p\\d+)_', whose text is the patient id")
        return pattern

    @model_validator(mode="after")
    def _maps_to_classes(self, info: ValidationInfo) -> SourceParams:
        classes = (info.context or {}).get("classes")
        for folder, label in self.class_map.items():
            if classes is not None and label is not None and label not in classes:
                raise ValueError(f"class_map: {folder!r} is mapped to {label!r}, which is not in classes {classes}; "
                                 f"use one of them, or null to drop the folder")
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


class IndexParams(Section):
    seed: Seed  # orders the groups before they are dealt into splits
    split: SplitParams
    near_duplicate_distance: int = Field(ge=0, le=256)
    max_image_pixels: int = Field(ge=64 * 64)  # larger images are skipped: decompression bombs, not X-rays


class DatasetParams(Section):
    """One dataset a model trains or is tested on: a view of an indexed source."""

    source: str
    # full: the whole film; lungs: the lungs only; outside: the film with the lungs blacked out (a shortcut probe).
    view: Literal["full", "lungs", "outside"]
    # An external test set: every usable image of the source goes to the test split (train and val stay
    # empty, so no model trains on it), e.g. Kermany for models trained on another collection.
    test_only: bool = False
    # Only the films the index put in this split, e.g. test: films no model trained on, for a test-only
    # dataset made from a source other datasets train on (the segmentation cascade). None: all of them.
    from_split: Literal["train", "val", "test"] | None = None

    @model_validator(mode="after")
    def _from_split_is_a_test_set(self) -> DatasetParams:
        if self.from_split is not None and not self.test_only:
            raise ValueError("from_split takes one split of the source, which can only be a test set: "
                             "set test_only: true, or remove from_split to keep the index's train/val/test split")
        return self


class PrepareParams(Section):
    image_size: int = Field(ge=32, le=MAX_IMAGE_SIDE)
    lung_margin: float = Field(ge=0, le=1)
