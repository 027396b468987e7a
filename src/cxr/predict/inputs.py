"""What `cxr predict` reads: image files, folders and zip archives, as (name, bytes) one film at a time.

Folders and zips are listed the way the index lists a raw source (cxr.io.sources.RawSource): sorted, OS
clutter left out. One in a known dataset layout (cxr.data.layouts: the Radiography Database, COVID-QU-Ex,
...) gives only its films: its lung masks are images too, but no X-rays to classify, and images the layout
does not take (a second copy deeper in the archive) are skipped and counted. Any other folder gives every
image file. Files that are no image by their name are counted, not read: a downloaded dataset holds CSV
sheets and READMEs beside its films. A file without a suffix is tried: DICOM files often have none.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cxr.data.layouts import Listing, is_image_name, list_source
from cxr.io.images import IMAGE_SUFFIXES
from cxr.io.sources import RawSource, SourceError, read_file


@dataclass(frozen=True)
class InputFile:
    name: str  # as the user will recognise it: the path given, or folder/member, archive.zip/member
    read: Callable[[], bytes]


@dataclass
class Inputs:
    files: list[InputFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # not images by their name (metadata sheets, documents)
    skipped_masks: list[str] = field(default_factory=list)  # the lung masks of a dataset layout
    skipped_outside_layout: list[str] = field(default_factory=list)  # images a dataset layout does not take
    layouts: dict[str, str] = field(default_factory=dict)  # folder or zip given -> its dataset layout
    missing: list[tuple[str, str]] = field(default_factory=list)  # (path, why it cannot be opened)


def looks_like_image(name: str) -> bool:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix == ""


def dataset_listing(source: RawSource) -> Listing | None:
    """The source's dataset layout, or None for a plain folder of images."""
    try:
        # A metadata sheet it cannot read is warned about on stdout, which --json keeps for the JSON alone.
        with contextlib.redirect_stdout(sys.stderr):
            return list_source(source, "auto")
    except ValueError:  # no layout fits, or nothing in it
        return None


def layout_member_kind(member: str, films: set[str], masks: set[str]) -> str:
    """film, mask, outside (an image the layout does not take) or ignored (no image): list_source's own
    sorting of the files a layout leaves out, so its counts and predict's agree."""
    if member in films:
        return "film"
    if not is_image_name(member):
        return "ignored"
    return "mask" if member in masks or "mask" in member.lower() else "outside"


def collect_inputs(paths: list[Path]) -> Inputs:
    inputs = Inputs()
    for path in paths:
        if not path.exists():
            inputs.missing.append((str(path), "no such file or folder"))
            continue
        if path.is_file() and path.suffix.lower() != ".zip":
            inputs.files.append(InputFile(str(path), functools.partial(read_file, path)))
            continue
        try:
            source = RawSource(path)
            members = source.files()
        except SourceError as err:
            inputs.missing.append((str(path), str(err)))
            continue
        listing = dataset_listing(source) if members else None
        if listing is not None:
            inputs.layouts[str(path)] = listing.layout
            films = {entry.name for entry in listing.entries}
            masks = {entry.mask for entry in listing.entries if entry.mask}
        skipped = {"mask": inputs.skipped_masks, "outside": inputs.skipped_outside_layout, "ignored": inputs.ignored}
        for member in members:
            name = f"{path}/{member}"
            if listing is None:
                kind = "film" if looks_like_image(member) else "ignored"
            else:
                kind = layout_member_kind(member, films, masks)
            if kind == "film":
                inputs.files.append(InputFile(name, _reader(source, member)))
            else:
                skipped[kind].append(name)
    return inputs


def _reader(source: RawSource, member: str) -> Callable[[], bytes]:
    return lambda: source.read(member)
