"""Where the pipeline's files are, read from dvc.yaml: the one place that names them.

Every stage gets the paths it reads and writes on its command line, from dvc.yaml. The command-line tools
that read the pipeline's results (`cxr predict`, `cxr docs`, `cxr pr-report`, `cxr experiments`) look the
same paths up here, in the dvc.yaml of the repository they run in: `stage_path("train", "--checkpoint",
dataset="full", model="resnet18")` is the path the train stage of that pair writes its checkpoint to.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

PIPELINE_FILE = Path("dvc.yaml")
_INTERPOLATION = re.compile(r"\$\{\s*(?:item\.)?([\w.]+)\s*\}")


class PipelineFileError(ValueError):
    """dvc.yaml is missing here, or declares no such stage or option; the message says which."""


def read_pipeline(path: Path | str = PIPELINE_FILE) -> dict[str, Any]:
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise PipelineFileError(f"no {path} here: run this in the repository's root folder") from None
    except yaml.YAMLError as err:
        raise PipelineFileError(f"{path} is not valid YAML ({err})") from None


def _arguments(stage: str, pipeline: Path | str) -> list[str]:
    """The words after `stages/<name>.py` in dvc.yaml's command of `stage`, uninterpolated."""
    stages = read_pipeline(pipeline).get("stages") or {}
    if stage not in stages:
        raise PipelineFileError(f"{pipeline} declares no stage {stage!r}")
    words = shlex.split(stages[stage].get("do", stages[stage])["cmd"])  # a foreach stage's command lies under `do`
    script = next((k for k, word in enumerate(words) if word.startswith("stages/")), len(words))
    return words[script + 1:]


def _filled(word: str, item: dict[str, str], where: str) -> str:
    def fill(match: re.Match) -> str:
        if match.group(1) not in item:
            raise PipelineFileError(f"{where}: {word} needs {match.group(1)}=")
        return item[match.group(1)]

    return _INTERPOLATION.sub(fill, word)


def command_arguments(stage: str, *, pipeline: Path | str = PIPELINE_FILE, **item: str) -> list[str]:
    """The arguments dvc.yaml's `stage` gives its entry point, each `${item.<key>}` (or `${key}`) filled from
    `item`."""
    return [_filled(word, item, f"{pipeline}: {stage}") for word in _arguments(stage, pipeline)]


def stage_template(stage: str, option: str, pipeline: Path | str = PIPELINE_FILE) -> str:
    """What dvc.yaml's `stage` passes to its `option`, uninterpolated: `models/${item.dataset}/${item.model}.pt`."""
    words = _arguments(stage, pipeline)
    if option not in words[:-1]:
        raise PipelineFileError(f"{pipeline}: the {stage} stage passes no {option}")
    return words[words.index(option) + 1]


def stage_path(stage: str, option: str, *, pipeline: Path | str = PIPELINE_FILE, **item: str) -> Path:
    """The path dvc.yaml's `stage` passes to its `option`, its `${item.<key>}` (or `${key}`) filled from `item`."""
    return Path(_filled(stage_template(stage, option, pipeline), item, f"{pipeline}: {stage} {option}"))


def optional_stage_path(stage: str, option: str, **item: str) -> Path | None:
    """stage_path here, or None outside a checkout (no dvc.yaml, or none with that stage and option)."""
    try:
        return stage_path(stage, option, **item)
    except PipelineFileError:
        return None


def stage_path_fields(stage: str, option: str, path: Path | str, *, pipeline: Path | str = PIPELINE_FILE) -> dict | None:
    """The inverse of stage_path: the fields that make `stage`'s `option` this path (relative to the working
    directory), or None when no entry of the stage would pass it."""
    template = stage_template(stage, option, pipeline)
    groups: dict[str, str] = {}  # field -> its regex group; a field used twice must match the same text
    pattern, start = "", 0
    for match in _INTERPOLATION.finditer(template):
        pattern += re.escape(template[start:match.start()])
        field = match.group(1)
        if field in groups:
            pattern += f"(?P={groups[field]})"
        else:
            groups[field] = f"g{len(groups)}"
            pattern += f"(?P<{groups[field]}>[^/]+)"
        start = match.end()
    pattern += re.escape(template[start:])
    found = re.fullmatch(pattern, Path(os.path.relpath(os.path.abspath(path))).as_posix())
    return None if found is None else {field: found[group] for field, group in groups.items()}


def registry(pipeline: Path | str = PIPELINE_FILE) -> dict[str, str]:
    """Model name -> checkpoint path, from dvc.yaml's artifacts (what `dvc artifacts get` knows); empty outside a
    checkout."""
    try:
        artifacts = read_pipeline(pipeline).get("artifacts") or {}
    except PipelineFileError:
        return {}
    return {name: entry["path"] for name, entry in artifacts.items() if entry.get("type") == "model"}
