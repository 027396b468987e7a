"""One view (full, lungs or outside) of an indexed source, as memory-mappable split arrays.

The split, the class and which files are usable all come from the source's index
(cxr.data.index), so the views of one source share one split by construction. The lungs and outside views
skip images without a usable lung mask and counts them in its report; it never moves an image to
another split. Given a `masker` (a trained segmenter's, cxr.segment.films.film_mask), the lungs view
cuts every film out with the predicted mask instead of the source's own, and the report sums up how
plausible those masks are.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cxr.data.index import USABLE_MASKS, RawChanged, parallel_map, read_index, read_lung_mask
from cxr.data.params import DatasetParams, PrepareParams
from cxr.data.views import MASKED_VIEWS, make_view
from cxr.io.arrays import SplitWriter, split_dir
from cxr.io.files import atomic_dir, write_json
from cxr.io.images import decode_image
from cxr.io.view_spec import ViewSpec, view_file
from cxr.io.sources import RawSource
from cxr.params import SPLITS


class ViewError(ValueError):
    """The view cannot be built; the message says why and what to change."""


Masker = Callable[[np.ndarray], np.ndarray]  # a film's pixels -> its lung mask at the same size


def prepare_view(name: str, dataset: DatasetParams, prepare: PrepareParams, classes: list[str], index: Path, out: Path,
                 report_file: Path, workers: int = 1, masker: Masker | None = None,
                 mask_summary: Callable[[], dict] | None = None) -> dict:
    """Writes the prepared dataset `name` from the source's `index` folder into the folder `out` (split arrays and
    view.json) and the view report to `report_file`; returns the report.

    The split arrays follow the index's split, or, for a test-only dataset, hold every image in test.
    With a `masker`, `mask_summary()`, called once every view is made, describes the predicted masks in the report.
    """
    description, rows = read_index(index, dataset.source)
    chosen: dict[str, list[dict]] = {split: [] for split in SPLITS}
    skipped = []
    for row in rows:
        if row["status"] != "ok" or (dataset.from_split is not None and row["split"] != dataset.from_split):
            continue
        if dataset.view in MASKED_VIEWS and masker is None and row["mask_status"] not in USABLE_MASKS:
            skipped.append({"file": row["name"], "reason": "no usable lung mask", "detail": row["mask_status"]})
            continue
        chosen["test" if dataset.test_only else row["split"]].append(row)
    report = view_report(name, dataset, prepare, classes, chosen, skipped)
    empty = [split for split in (["test"] if dataset.test_only else SPLITS) if not chosen[split]]
    if empty:
        write_json(report_file, {"error": f"empty splits {empty}", **report})
        raise ViewError(f"the {', '.join(empty)} split of dataset {name!r} would be empty ({report['images_kept']} usable "
                        f"images in source {dataset.source!r}); add images, or check the source's data report")

    spec = ViewSpec(dataset.view, prepare.image_size, prepare.lung_margin)
    view = spec.as_dict()
    source = RawSource(description["path"], root=description["root"])
    if masker is not None:
        workers = 1  # the segmenter lives in this process
    with atomic_dir(out) as folder:
        spec.write(view_file(folder))
        for split in SPLITS:
            split_rows = chosen[split]
            size = prepare.image_size
            with SplitWriter(split_dir(folder, split), len(split_rows), (size, size)) as writer:
                made = parallel_map(_view_in_worker, split_rows, workers, _init_worker, (source, view, masker),
                                    f"{name} {split}")
                for index, (image, mask) in enumerate(made):
                    writer.put(index, image, mask)
                writer.finish(np.array([classes.index(row["label"]) for row in split_rows], dtype=np.int64),
                              np.array([row["name"] for row in split_rows], dtype=str))
    if masker is not None:
        report["masks"] = "segmenter"
        if mask_summary is not None:
            report["segmenter_mask_checks"] = mask_summary()
    write_json(report_file, report)
    return report


_worker_source: RawSource | None = None
_worker_view: dict = {}
_worker_masker: Masker | None = None


def _init_worker(source: RawSource, view: dict, masker: Masker | None = None) -> None:
    global _worker_source, _worker_view, _worker_masker
    _worker_source, _worker_view, _worker_masker = source, view, masker
    source.forget_handle()


def _view_in_worker(row: dict) -> tuple[np.ndarray, np.ndarray]:
    assert _worker_source is not None
    return view_of_row(_worker_source, row, _worker_view, _worker_masker)


def view_of_row(source: RawSource, row: dict, view: dict, masker: Masker | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The stored image and mask of one index row, from the very bytes the index read; the mask predicted
    by `masker` where given, else the source's own."""
    data = source.read(row["name"])
    if hashlib.md5(data).hexdigest() != row["file_md5"]:
        raise RawChanged(row["name"])
    pixels = decode_image(data, row["name"]).pixels
    mask = masker(pixels) if masker is not None else read_lung_mask(source, row, pixels, None)
    if mask is None:
        mask = np.zeros(pixels.shape, dtype=bool)
    return make_view(pixels, mask, view["view"], view["image_size"], view["lung_margin"])


def view_report(name: str, dataset: DatasetParams, prepare: PrepareParams, classes: list[str],
                chosen: dict[str, list[dict]], skipped: list[dict]) -> dict:
    kept = [row for rows in chosen.values() for row in rows]
    return {
        "dataset": name,
        "source": dataset.source,
        "view": dataset.view,
        "test_only": dataset.test_only,
        "image_size": prepare.image_size,
        "images_kept": len(kept),
        "images_skipped": len(skipped),
        "counts": {split: {label: sum(row["label"] == label for row in chosen[split]) for label in classes}
                   for split in SPLITS},
        "images_without_mask": sum(row["mask_status"] not in USABLE_MASKS for row in kept),
        "masks_resized": sum(row["mask_status"] == "resized" for row in kept),
        "skipped_by_reason": dict(Counter(entry["detail"].split(":")[0] for entry in skipped)),
        "skipped": skipped,
    }
