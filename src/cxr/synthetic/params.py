"""Schema of the `generate` section of params.yaml."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from cxr.params import MAX_IMAGE_SIDE, Section, Seed


def overlapping_folders(first: Path | str, second: Path | str) -> bool:
    """Whether two folders are the same or one contains the other (a folder is relative to itself)."""
    a, b = Path(first).resolve(), Path(second).resolve()
    return a.is_relative_to(b) or b.is_relative_to(a)


class GenerateParams(Section):
    seed: Seed
    out_dir: str
    images_per_class: int = Field(ge=1)
    image_size: int = Field(ge=64, le=MAX_IMAGE_SIDE)
    follow_up_fraction: float = Field(ge=0, le=1)
    duplicate_fraction: float = Field(ge=0, le=1)
    shortcut: float = Field(ge=0, le=1)  # share of the twin's films that carry the class marker
    shortcut_dir: str  # the twin: the same films, some with the marker

    @model_validator(mode="after")
    def _twin_beside_the_clean_set(self) -> GenerateParams:
        if overlapping_folders(self.out_dir, self.shortcut_dir):
            raise ValueError(f"shortcut_dir {self.shortcut_dir!r} must differ from out_dir {self.out_dir!r}, and neither "
                             f"may contain the other: each is replaced whole, so the twin would overwrite the clean set")
        return self


class RadiographyParams(Section):
    """The second synthetic hospital, zipped in the Kaggle Radiography Database layout (the default external test)."""

    seed: Seed
    out_zip: str
    images_per_class: int = Field(ge=1)
    image_size: int = Field(ge=64, le=MAX_IMAGE_SIDE)
    mask_size: int = Field(ge=64, le=MAX_IMAGE_SIDE)
    gamma: float = Field(gt=0.2, lt=5)  # the site's tone curve on every film; 1: none
