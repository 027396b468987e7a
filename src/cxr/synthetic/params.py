"""Schema of the `generate` section of params.yaml."""

from __future__ import annotations

from pydantic import Field

from cxr.params import Section, Seed


class GenerateParams(Section):
    seed: Seed
    out_dir: str
    images_per_class: int = Field(ge=1)
    image_size: int = Field(ge=64)
    follow_up_fraction: float = Field(ge=0, le=1)
    duplicate_fraction: float = Field(ge=0, le=1)
    shortcut: float = Field(ge=0, le=1)


class RadiographyParams(Section):
    """The second synthetic hospital, zipped in the Kaggle Radiography Database layout (the default external test)."""

    seed: Seed
    out_zip: str
    images_per_class: int = Field(ge=1)
    image_size: int = Field(ge=64)
    mask_size: int = Field(ge=64)
    gamma: float = Field(gt=0.2, lt=5)  # the site's tone curve on every film; 1: none
