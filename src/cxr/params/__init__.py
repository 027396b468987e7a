"""Reading params.yaml: each stage validates only the sections it uses, and fails early with one line per problem.

A section's schema lives beside the code that uses it (`cxr.data.params`, `cxr.training.params`, ...);
this package holds only the reader and the keys every stage shares. So a new stage's section touches
no existing stage's code dependencies, and a typo in one stage's section never stops another stage.
"""

from __future__ import annotations

import argparse
import errno
import gc
import math
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

if TYPE_CHECKING:
    import torch

PARAMS_FILE = Path("params.yaml")
# The splits every source is cut into (index) and every prepared dataset holds (prepare), in this order.
SPLITS = ("train", "val", "test")


class ParamsError(ValueError):
    """params.yaml is missing, malformed or inconsistent; the message names each offending key."""


class Section(BaseModel):
    # A typo such as `epoch:` must fail loudly instead of silently keeping the default.
    # Strict: `seed: "42"` is a string, not a number, and `lr: .inf` no learning rate.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"lists a name twice: {values}")
    return values


def _known_device(device: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return device


# Upper bounds that follow from memory: prepare holds a split as uint8 side x side arrays and a batch goes
# through the network at once. 1024 px is four times the study's inputs; a 100000 px side would need 10 GB a film.
MAX_IMAGE_SIDE = 1024
MAX_BATCH_SIZE = 1024

# The keys several stages share.
Classes = Annotated[list[str], Field(min_length=2), AfterValidator(_unique)]
Names = Annotated[list[str], Field(min_length=1), AfterValidator(_unique)]
NameList = Annotated[list[str], AfterValidator(_unique)]  # may be empty: an optional part of the pipeline
Device = Annotated[str, AfterValidator(_known_device)]
Seed = Annotated[int, Field(ge=0)]
Workers = Annotated[int, Field(ge=0)]  # decoding processes; 0: one per CPU core


class DeviceError(ValueError):
    """The device asked for does not exist here; the message says what to use."""


def resolve_device(requested: str) -> torch.device:
    """The torch device `requested` names (auto: CUDA when there is one), if this machine has it."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = re.fullmatch(r"cpu|cuda(?::(\d+))?", requested)
    if match is None:
        raise DeviceError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"{requested!r} asked for, but no CUDA device is available here; use auto or cpu")
        if int(match.group(1) or 0) >= torch.cuda.device_count():
            raise DeviceError(f"{requested!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s); "
                              f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}, auto or cpu")
    return torch.device(requested)


def worker_count(workers: int) -> int:
    import os

    if workers:
        return workers
    # The cores this process may use (a container or CI runner often allows fewer than the machine has).
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: plain YAML keeps the last, silently."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice (the later one would "
                                                        f"silently win): keep one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_params_file(path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """The raw params mapping; any problem with the file itself becomes one ParamsError line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run the stages from the repository root") from None
    except IsADirectoryError:
        raise ParamsError(f"{path} is a folder, not a params file: remove it and restore params.yaml "
                          f"(`git checkout params.yaml`)") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path} is not a text file (not UTF-8): restore params.yaml (`git checkout params.yaml`)") from None
    except OSError as err:
        raise ParamsError(f"{path} cannot be read ({err.strerror or err})") from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must be a mapping of keys to values, not a {type(raw).__name__}")
    not_finite = sorted(_non_finite(raw))
    if not_finite:
        raise ParamsError(f"{path}: {', '.join(not_finite)}: not a finite number (.inf and .nan are no setting)")
    return raw


def _non_finite(node: Any, where: str = "") -> Iterator[str]:
    if isinstance(node, float) and not math.isfinite(node):
        yield where
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _non_finite(value, f"{where}[{index}]")


_MISSING = object()


def _lookup(raw: Mapping[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def load_params(schemas: Mapping[str, Any], path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """Validates the (dotted) keys in `schemas`, each with its schema, and nothing else of the file.

    Keys are validated in order; each schema sees the keys validated before it as pydantic context
    (e.g. `dataset.full` checks its class folders against `classes`). All problems are reported at once.
    """
    raw = read_params_file(path)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, schema in schemas.items():
        value = _lookup(raw, key)
        if value is _MISSING:
            problems.append(f"  - {key}: missing")
            continue
        try:
            values[key] = TypeAdapter(schema).validate_python(value, context=dict(values))
        except ValidationError as err:
            problems.extend(_describe(key, err))
    if problems:
        raise ParamsError(f"{path} is invalid:\n" + "\n".join(problems))
    return values


def _describe(key: str, err: ValidationError) -> list[str]:
    lines = []
    for problem in err.errors():
        where = ".".join([key, *(str(part) for part in problem["loc"])])
        lines.append(f"  - {where}: {problem['msg'].removeprefix('Value error, ')}")
    return lines


def stage_arguments(description: str | None, argv: list[str] | None = None, *, model: bool | str = False,
                    dataset: bool = False, source: bool = False, tested_on: bool = False,
                    paths: Mapping[str, str] | None = None) -> argparse.Namespace:
    """A stage's command line: `--model`, `--dataset`, `--source` and `--tested-on` name entries of params.yaml;
    each key of `paths` is a required `--<key> PATH` (its value the help): the files the stage reads and writes,
    which dvc.yaml passes, the one place that names them.

    model="one or several" also accepts `--models-of KEY` instead of `--model`: the params key listing the
    models (DVC interpolates no list into a command, so the stage reads the list itself).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if source:
        parser.add_argument("--source", required=True, help="a name with a `source.<name>` entry in params.yaml")
    if model == "one or several":
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--model", help="a name with a `model.<name>` entry in params.yaml")
        which.add_argument("--models-of", metavar="KEY", help="a params key listing model names (models, probe.models)")
    elif model:
        parser.add_argument("--model", required=True, help="a name with a `model.<name>` entry in params.yaml")
    if dataset:
        parser.add_argument("--dataset", required=True, help="a name with a `dataset.<name>` entry in params.yaml")
    if tested_on:
        parser.add_argument("--tested-on", help="evaluate on this dataset's test split instead (cross-dataset test)")
    for option, meaning in (paths or {}).items():
        parser.add_argument(f"--{option}", type=Path, required=True, metavar="PATH", help=meaning)
    return parser.parse_args(argv)


def freeze_imports() -> None:
    """For a stage's own process, once its modules are imported: the objects alive now (torch and torchvision
    alone hold about 300,000) move out of the garbage collector's sight (gc.freeze). They live until the process
    ends anyway; without this, every full collection during the stage and the interpreter's shutdown traverse
    them, which costs a torch stage about 0.8 s of its 4 to 5 s on a tiny pipeline. Not for a long-lived process
    (tests, notebooks): what is frozen is never collected."""
    gc.freeze()


def one_line_when_the_disk_is_full(kind: type, value: BaseException, traceback: Any) -> None:
    """A stage's excepthook: a full disk is the machine's state, not a bug, so it gets one line, not a traceback."""
    if isinstance(value, OSError) and value.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" while writing {value.filename}" if value.filename else ""
        print(f"error: no space left on the device{where}: outputs are replaced only when complete, so the previous "
              f"ones are intact; free space, then run the stage again", file=sys.stderr)
        return
    sys.__excepthook__(kind, value, traceback)


def stage_params(schemas: Mapping[str, Any], path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """load_params for a stage: a problem stops the process with its one-line-per-key message."""
    sys.excepthook = one_line_when_the_disk_is_full
    try:
        params = load_params(schemas, path)
    except ParamsError as err:
        raise SystemExit(f"error: {err}") from None
    if "device" in params:
        # Checked here, where the stage runs: a team's params may name a GPU other machines lack.
        try:
            resolve_device(params["device"])
        except DeviceError as err:
            raise SystemExit(f"error: params.yaml device: {err}") from None
    return params
