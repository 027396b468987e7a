"""`cxr inspect`: what the index stage will find in raw sources, and what they share, with nothing written.

A path that params.yaml names as `source.<name>.path` is read with that source's settings (class map,
layout, patient ids, own split), so inspect shows what `dvc repro index@<name>` will make of it;
`--layout` and `--class-map` override them. stdout carries the report alone, text or strict JSON:
whatever the libraries print or warn while the files are read goes to stderr, so that
`cxr inspect X.zip --json > report.json` is always valid JSON.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from cxr.params import PARAMS_FILE

DEFAULT_CLASSES = ["COVID-19", "Pneumonia", "Normal"]
DROP = ("", "null")  # --class-map RAW= or RAW=null drops the raw class, as null does in params.yaml


def run_inspect(paths: list[Path], *, as_json: bool, layout: str | None = None, workers: int = 0,
                class_map: list[str] | None = None) -> int:
    from cxr.data.index import SourceIndexError, build_index
    from cxr.data.params import SourceParams
    from cxr.data.report import shared_images, shared_lines, summary_lines
    from cxr.params import worker_count

    classes, index, configured = repository_settings()
    try:
        overrides = parse_class_map(class_map or [], classes)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    built, failed = [], 0
    # A metadata sheet that cannot be read is reported with print(): on stderr here, beside the progress bars.
    with contextlib.redirect_stdout(sys.stderr):
        for path in paths:
            name, settings = configured_source(path, configured)
            if name is not None:
                print(f"{path}: read with the settings of source.{name} in {PARAMS_FILE}", file=sys.stderr)
            settings = {**settings, "path": str(path), "layout": layout or settings.get("layout", "auto"),
                        "class_map": {**(settings.get("class_map") or {}), **overrides}}
            try:
                source = SourceParams.model_validate(settings, context={"classes": classes})
                built.append(build_index(path.name, source, index, classes, worker_count(workers)))
            except (SourceIndexError, ValueError) as err:
                print(f"error: {path}: {err}", file=sys.stderr)
                failed += 1
        shared = shared_images(built, index.near_duplicate_distance)
    if as_json:
        json.dump({"sources": [b.report for b in built], "shared_images": shared}, sys.stdout, indent=1, allow_nan=False)
        print()
    else:
        for b in built:
            print("\n".join(summary_lines(b.report)))
        if len(built) > 1:
            print("\n".join(shared_lines(shared)))
    return 1 if failed else 0


def parse_class_map(settings: list[str], classes: list[str]) -> dict[str, str | None]:
    """`--class-map RAW=CLASS` options as a class_map: RAW= or RAW=null drops the raw class."""
    found: dict[str, str | None] = {}
    for setting in settings:
        raw, sep, label = setting.rpartition("=")
        if not sep or not raw:
            raise ValueError(f"--class-map {setting!r}: expected RAW=CLASS (RAW= or RAW=null drops the raw class)")
        label = label.strip()
        if label.lower() in DROP:
            found[raw] = None
        elif label in classes:
            found[raw] = label
        else:
            raise ValueError(f"--class-map {setting!r}: {label!r} is not one of the classes {classes}; "
                             f"use one of them, or RAW=null to drop the raw class")
    return found


def configured_source(path: Path, sources: dict) -> tuple[str | None, dict]:
    """(name, settings) of the params.yaml source read from `path`, or (None, {}) for a path no source names."""
    for name, settings in sources.items():
        if isinstance(settings, dict) and "path" in settings and Path(str(settings["path"])).resolve() == path.resolve():
            return name, dict(settings)
    return None, {}


def repository_settings():
    """This repository's classes, index settings and sources when run inside it, else the defaults of params.yaml."""
    from cxr.data.params import IndexParams, SplitParams
    from cxr.params import read_params_file

    try:
        raw = read_params_file(PARAMS_FILE)
        sources = raw.get("source") if isinstance(raw.get("source"), dict) else {}
        return list(raw["classes"]), IndexParams.model_validate(raw["index"]), sources
    except Exception:  # noqa: BLE001 - outside a checkout (or with a broken params.yaml) the defaults do
        split = SplitParams(train=0.7, val=0.15, test=0.15)
        return (DEFAULT_CLASSES, IndexParams(seed=42, split=split, near_duplicate_distance=12, max_image_pixels=50_000_000),
                {})
