"""What `cxr predict` reads: image files, folders and zip archives, as (name, bytes) one film at a time.

Folders and zips are listed the way the index lists a raw source (cxr.io.sources.RawSource): sorted, OS
clutter left out. Files that are no image by their name are counted, not read: a downloaded dataset holds
CSV sheets and READMEs beside its films. A file without a suffix is tried: DICOM files often have none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cxr.io.images import IMAGE_SUFFIXES
from cxr.io.sources import RawSource, SourceError


@dataclass(frozen=True)
class InputFile:
    name: str  # as the user will recognise it: the path given, or folder/member, archive.zip/member
    read: Callable[[], bytes]


@dataclass
class Inputs:
    files: list[InputFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # not images by their name
    missing: list[tuple[str, str]] = field(default_factory=list)  # (path, why it cannot be opened)


def looks_like_image(name: str) -> bool:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix == ""


def collect_inputs(paths: list[Path]) -> Inputs:
    inputs = Inputs()
    for path in paths:
        if not path.exists():
            inputs.missing.append((str(path), "no such file or folder"))
            continue
        if path.is_file() and path.suffix.lower() != ".zip":
            inputs.files.append(InputFile(str(path), path.read_bytes))
            continue
        try:
            source = RawSource(path)
        except SourceError as err:
            inputs.missing.append((str(path), str(err)))
            continue
        for member in source.files():
            name = f"{path}/{member}"
            if looks_like_image(member):
                inputs.files.append(InputFile(name, _reader(source, member)))
            else:
                inputs.ignored.append(name)
    return inputs


def _reader(source: RawSource, member: str) -> Callable[[], bytes]:
    return lambda: source.read(member)
