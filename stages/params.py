"""The one place that reads params.yaml and checks it, so every stage fails early with one clear message."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PARAMS_FILE = Path("params.yaml")

# Smallest input each architecture accepts: InceptionV3's stem and grid reductions need 75 px,
# the others downsample 32x.
MIN_INPUT_SIZE = {"resnet18": 32, "resnet34": 32, "densenet161": 32, "inception_v3": 75}


class ParamsError(ValueError):
    """params.yaml is missing, malformed or inconsistent."""


class _Section(BaseModel):
    # A typo such as `epoch:` must fail loudly instead of silently keeping the default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerateParams(_Section):
    out_dir: str
    images_per_class: int = Field(ge=1)
    image_size: int = Field(ge=64)
    follow_up_fraction: float = Field(ge=0, le=1)
    duplicate_fraction: float = Field(ge=0, le=1)
    shortcut: float = Field(ge=0, le=1)


class DatasetParams(_Section):
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


class SplitParams(_Section):
    train: float = Field(gt=0, lt=1)
    val: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _adds_up(self) -> SplitParams:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + val + test = {total:g}, must add up to 1")
        return self


class PrepareParams(_Section):
    image_size: int = Field(ge=32)
    lung_margin: float = Field(ge=0, le=1)
    split: SplitParams
    near_duplicate_distance: int = Field(ge=0, le=256)


class AugmentParams(_Section):
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


class TrainParams(_Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    weight_decay: float = Field(ge=0)
    class_balance: Literal["loss", "sampler", "none"]
    num_workers: int = Field(ge=0)
    augment: AugmentParams


class ModelParams(_Section):
    arch: str
    image_size: int
    lr: float = Field(gt=0)
    weights: str = "none"

    @model_validator(mode="after")
    def _known_arch_and_size(self) -> ModelParams:
        if self.arch not in MIN_INPUT_SIZE:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(MIN_INPUT_SIZE)}")
        smallest = MIN_INPUT_SIZE[self.arch]
        if self.image_size < smallest:
            raise ValueError(f"image_size {self.image_size} is too small for {self.arch}: it needs at least {smallest} px")
        return self


class EvaluateParams(_Section):
    batch_size: int = Field(ge=1)
    bootstrap_resamples: int = Field(ge=100)
    confidence_level: float = Field(gt=0, lt=1)
    calibration_bins: int = Field(ge=2)


class Params(_Section):
    seed: int
    device: str
    classes: list[str] = Field(min_length=2)
    datasets: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    generate: GenerateParams
    dataset: dict[str, DatasetParams]
    prepare: PrepareParams
    train: TrainParams
    model: dict[str, ModelParams]
    evaluate: EvaluateParams

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return device

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        for name, values in (("classes", self.classes), ("datasets", self.datasets), ("models", self.models)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists a name twice: {values}")
        for name in self.datasets:
            if name not in self.dataset:
                raise ValueError(f"dataset {name!r} is listed in `datasets` but has no `dataset.{name}` entry")
            self._check_class_folders(name, self.dataset[name])
        for name in self.dataset:
            if name not in self.datasets:
                raise ValueError(f"`dataset.{name}` is defined but not listed in `datasets`: list it or remove the entry")
        for name in self.models:
            if name not in self.model:
                known = ", ".join(self.model) or "none"
                raise ValueError(f"unknown model {name!r}: add a `model.{name}` entry (defined: {known})")
        return self

    def _check_class_folders(self, dataset: str, params: DatasetParams) -> None:
        where = f"dataset.{dataset}.class_folders"
        for folder, label in params.class_folders.items():
            if not label:
                raise ValueError(f"{where}: folder {folder!r} is mapped to nothing; map it to one of {self.classes} or remove it")
            if label not in self.classes:
                raise ValueError(f"{where}: folder {folder!r} is mapped to {label!r}, which is not in classes {self.classes}")
        for label in self.classes:
            if label not in params.class_folders.values():
                raise ValueError(f"{where}: no folder is mapped to class {label!r}")


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run the stages from the repository root") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
    try:
        return Params.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        raise ParamsError(f"{path} is invalid:\n{_describe(err)}") from None


def _describe(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  - {where}: {message}" if where else f"  - {message}")
    return "\n".join(lines)


def stage_arguments(description: str | None, argv: list[str] | None = None, *, model: bool = False,
                    dataset: bool = False) -> tuple[Params, argparse.Namespace]:
    """Command line of a stage (`--model`, `--dataset`) plus the validated params; exits with a clear message on error."""
    parser = argparse.ArgumentParser(description=description)
    if model:
        parser.add_argument("--model", required=True, help="a name from `models` in params.yaml")
    if dataset:
        parser.add_argument("--dataset", required=True, help="a name from `datasets` in params.yaml")
    args = parser.parse_args(argv)
    try:
        params = load_params()
    except ParamsError as err:
        parser.exit(2, f"error: {err}\n")
    if model and args.model not in params.models:
        parser.error(f"--model {args.model!r} is not listed in `models` of params.yaml {params.models}")
    if dataset and args.dataset not in params.datasets:
        parser.error(f"--dataset {args.dataset!r} is not listed in `datasets` of params.yaml {params.datasets}")
    return params, args
