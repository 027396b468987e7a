"""The index of one raw source: every file read once, validated, hashed, grouped and split.

The index (an index folder's index.csv and source.json) is what everything downstream reads:
both views (cxr.data.prepare), the data report, `cxr inspect` and the segmentation export. Both views
of one source therefore share one split by construction, even where one view has to skip images.
Each row holds the MD5 of the file bytes that were read, so a view verifies it reads the same files,
and the film's statistics outside its lungs, which the shortcut audit compares (cxr.data.audit).

Splits keep whole groups together: exact and near-duplicate images (a 256-bit dHash within
`index.near_duplicate_distance` bits) and images of one patient. They are stratified by class. No
resampling happens here: class balance is handled inside training only, after the split.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cxr.data.audit import (
    STATISTIC_COLUMNS,
    USABLE_MASKS,
    baseline_flag,
    common_sizes,
    image_statistics,
    metadata_baseline,
    shortcut_flags,
    statistics_summary,
)
from cxr.data.layouts import DEFAULT_PATIENT_PATTERNS, Entry, Listing, is_image_name, list_source, map_class
from cxr.data.params import IndexParams, SourceParams, SplitParams
from cxr.data.views import fit_mask, same_aspect
from cxr.io.files import atomic_dir, atomic_path, write_json
from cxr.io.images import decode_image, is_dicom, mask_from_pixels, nonblack_mask
from cxr.io.pixels import UnreadableImage, difference_hash, hash_distance
from cxr.io.sources import RawSource, SourceError
from cxr.params import SPLITS

COLUMNS = ("name", "raw_class", "label", "status", "detail", "split", "own_split", "group", "duplicate_group",
           "patient_id", "file_md5", "pixel_sha1", "dhash", "format", "mode", "bits", "width", "height", "border",
           "mask", "mask_md5", "mask_status", "subtype", "source", *STATISTIC_COLUMNS)

# Parallel decoding pays for its process start-up from about this many files.
PARALLEL_FROM = 400


class SourceIndexError(ValueError):
    """The source cannot be indexed at all; the message says why and what to change."""


@dataclass
class Index:
    rows: list[dict]  # one per listed image, in COLUMNS
    report: dict


def build_index(name: str, params: SourceParams, index: IndexParams, classes: list[str], workers: int = 1) -> Index:
    """Reads every image of the source once; returns its rows and the data report (nothing written)."""
    try:
        source = RawSource(params.path)
        listing = list_source(source, params.layout)
    except (SourceError, ValueError) as err:
        raise SourceIndexError(f"source.{name}.path: {err}") from None
    pattern = params.patient_id_pattern
    if pattern == "layout":
        pattern = DEFAULT_PATIENT_PATTERNS.get(listing.layout)
    patient_re = re.compile(pattern) if pattern else None
    if params.own_split and not all(entry.own_split for entry in listing.entries):
        # Checked before reading anything: the answer is in the file list.
        raise SourceIndexError(f"source.{name}.own_split is true but the {listing.layout} layout has no split "
                               f"folders (train/val/test); set it to false")

    rows, to_scan, dropped, misnamed = [], [], Counter(), []
    for entry in listing.entries:
        label = map_class(entry.raw_class, params.class_map, classes)
        if label is None:
            dropped[entry.raw_class] += 1
            continue
        row = dict.fromkeys(COLUMNS, "")
        if not utf8_name(entry.name):
            # The index is UTF-8 text: such a name can be neither written nor looked up again.
            shown = entry.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            row.update(name=shown[len(listing.root):], raw_class=entry.raw_class, label=label,
                       status="unusable file name", detail="the name is not valid UTF-8: rename the file")
            misnamed.append(row)
            continue
        match = patient_re.search(Path(entry.name).name) if patient_re else None
        # Names relative to the layout's root: a folder and its zip index alike.
        row.update(name=entry.name[len(listing.root):], raw_class=entry.raw_class, label=label,
                   own_split=entry.own_split or "", patient_id=match.group(1) if match else "",
                   mask=(entry.mask or "")[len(listing.root):], **entry.extra)
        rows.append(row)
        to_scan.append(entry)
    for row, scanned in zip(rows, scan_entries(source, to_scan, index.max_image_pixels, workers)):
        row.update(scanned)
    source.close()
    rows += misnamed

    drop_cross_class_duplicates(rows)
    kept = [row for row in rows if row["status"] == "ok"]
    check_every_class_kept(name, rows, kept, classes, dropped)
    if kept:
        duplicate_groups = near_duplicate_groups(kept, index.near_duplicate_distance)
        groups = split_groups(kept, duplicate_groups)
        for row, dup, group in zip(kept, duplicate_groups, groups):
            row["duplicate_group"], row["group"] = int(dup), int(group)
        if params.own_split:
            for row in kept:
                row["split"] = row["own_split"]
        else:
            labels = np.array([classes.index(row["label"]) for row in kept])
            splits = assign_splits(groups, labels, index.split, index.seed, group_keys(kept, groups))
            for row, split in zip(kept, splits):
                row["split"] = SPLITS[split]
    report = data_report(name, params, source, listing, classes, rows, dropped, seed=index.seed)
    return Index(rows, report)


def utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a folder listing, kept as surrogates
        return False
    return True


def check_every_class_kept(name: str, rows: list[dict], kept: list[dict], classes: list[str], dropped: Counter) -> None:
    """A class whose folders gave no usable image (or a source that gave none at all) stops the index: training on
    what is left would silently be another problem. A class with no folder at all is allowed (Kermany has no
    COVID-19); the report lists the classes found."""
    folders: dict[str, set[str]] = {}
    for row in rows:
        folders.setdefault(row["label"], set()).add(row["raw_class"])
    fix = f"fix source.{name}.path or source.{name}.class_map"
    if not kept:
        found = sorted({*dropped, *(raw for raws in folders.values() for raw in raws)})
        raise SourceIndexError(f"source.{name}: no usable image of {', '.join(classes)}; class folders found: "
                               f"{', '.join(found) or 'none'} ({', '.join(f'{s} {n}' for s, n in _status_counts(rows)) or 'no files'}): {fix}")
    have = Counter(row["label"] for row in kept)
    for label, raws in folders.items():
        if not have[label]:
            statuses = _status_counts([row for row in rows if row["label"] == label])
            raise SourceIndexError(f"source.{name}: class {label}: no usable image in {', '.join(sorted(raws))} "
                                   f"({', '.join(f'{s} {n}' for s, n in statuses)}): {fix}, or make the files readable")


def _status_counts(rows: list[dict]) -> list[tuple[str, int]]:
    return sorted(Counter(row["status"] for row in rows).items())


def index_file(folder: Path) -> Path:
    """One row per image of the source: class, status, hashes, groups, split, mask (COLUMNS)."""
    return Path(folder) / "index.csv"


def source_file(folder: Path) -> Path:
    """Where the indexed source lies and its layout, so the views read the same files."""
    return Path(folder) / "source.json"


def write_index(folder: Path, report_file: Path, built: Index) -> None:
    """The index folder (rows and source description) and the data report, each replaced whole."""
    with atomic_dir(folder) as out:
        with atomic_path(index_file(out)) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(built.rows)
        write_json(source_file(out), {key: built.report[key] for key in ("source", "path", "kind", "layout", "root")})
    write_json(report_file, built.report)


def read_index(folder: Path, source: str) -> tuple[dict, list[dict]]:
    """(source description, rows) of the source `source`, indexed into `folder`."""
    if not index_file(folder).exists():
        raise FileNotFoundError(f"{index_file(folder)} not found: run `dvc repro index@{source}` first")
    with index_file(folder).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return json.loads(source_file(folder).read_text()), rows


# --- reading every file once ---------------------------------------------------------------------------------

_worker_source: RawSource | None = None
_worker_max_pixels: int | None = None


def _init_worker(source: RawSource, max_pixels: int) -> None:
    global _worker_source, _worker_max_pixels
    _worker_source, _worker_max_pixels = source, max_pixels
    source.forget_handle()


def _scan_in_worker(entry: Entry) -> dict:
    assert _worker_source is not None
    return scan_entry(_worker_source, entry, _worker_max_pixels)


def parallel_map(function: Callable, items: list, workers: int, initializer: Callable, initargs: tuple,
                 desc: str) -> Iterator:
    """function(item) for each item, in order, over `workers` processes, with a progress bar."""
    progress = dict(total=len(items), desc=desc, unit="img", disable=None, mininterval=1.0)
    if workers <= 1 or len(items) < PARALLEL_FROM:
        initializer(*initargs)
        yield from tqdm(map(function, items), **progress)
        return
    with ProcessPoolExecutor(workers, initializer=initializer, initargs=initargs) as pool:
        yield from tqdm(pool.map(function, items, chunksize=64), **progress)


def scan_entries(source: RawSource, entries: list[Entry], max_pixels: int, workers: int) -> Iterable[dict]:
    return parallel_map(_scan_in_worker, entries, workers, _init_worker, (source, max_pixels), "indexing")


def scan_entry(source: RawSource, entry: Entry, max_pixels: int | None) -> dict:
    """What one image file is: status, hashes, format and size, border, lung-mask status."""
    suffix = Path(entry.name).suffix
    if suffix and not is_image_name(entry.name):
        return {"status": "not an image file", "detail": f"suffix {suffix}"}
    try:
        data = source.read(entry.name)
    except OSError as err:
        return {"status": "unreadable image", "detail": str(err)}
    if not suffix and not is_dicom(entry.name, data):
        # DICOM exports often have no suffix (IM00001): those are read; other suffix-less files are not images.
        return {"status": "not an image file", "detail": "no suffix and no DICOM header"}
    try:
        image = decode_image(data, entry.name, max_pixels)
    except UnreadableImage as err:
        status = "too large" if str(err).startswith("too large") else "unreadable image"
        return {"status": status, "detail": naming_the_file(err, entry.name), "file_md5": hashlib.md5(data).hexdigest()}
    pixels = image.pixels
    found = {"file_md5": hashlib.md5(data).hexdigest(), "format": image.format, "mode": image.mode,
             "bits": image.bits, "height": pixels.shape[0], "width": pixels.shape[1], "border": border_pattern(pixels)}
    if pixels.min() == pixels.max():
        return {**found, "status": "constant image", "detail": f"every pixel is {pixels.min()}, no X-ray content"}
    found.update(status="ok", pixel_sha1=pixel_hash(pixels), dhash=difference_hash(pixels).tobytes().hex())
    mask_found, lungs = check_mask(source, entry, pixels, max_pixels)
    found.update(mask_found)
    # Here, while the film and its mask are decoded: the audit's statistics cost no second read.
    found.update(image_statistics(pixels, lungs))
    return found


def naming_the_file(err: Exception, name: str) -> str:
    """An error message with the file's name where PIL names the in-memory buffer it read from."""
    return re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", name, str(err))


def pixel_hash(pixels: np.ndarray) -> str:
    return hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


def check_mask(source: RawSource, entry: Entry, pixels: np.ndarray,
               max_pixels: int | None) -> tuple[dict, np.ndarray | None]:
    """(the mask columns of the row, the lung mask at the film's size where it is usable, else None)."""
    if entry.mask_from_image:
        mask = nonblack_mask(pixels)
        return ({"mask_status": "from image"}, mask) if mask.any() else ({"mask_status": "empty"}, None)
    if not entry.mask:
        return {"mask_status": "missing"}, None
    try:
        data = source.read(entry.mask)
        mask = mask_from_pixels(decode_image(data, entry.mask, max_pixels).pixels)
    except (OSError, UnreadableImage) as err:
        return {"mask_status": f"unreadable: {naming_the_file(err, entry.mask)}"}, None
    found = {"mask_md5": hashlib.md5(data).hexdigest()}
    status = "file"
    if mask.shape != pixels.shape:
        described = f"mask {mask.shape[1]}x{mask.shape[0]}, image {pixels.shape[1]}x{pixels.shape[0]}"
        if not same_aspect(mask.shape, pixels.shape):
            # Stretching it would put lungs where there are none.
            return {**found, "mask_status": f"shape differs: {described}"}, None
        mask, status = fit_mask(mask, pixels.shape), "resized"
    if not mask.any():
        return {**found, "mask_status": "empty"}, None
    return {**found, "mask_status": status}, mask


def read_lung_mask(source: RawSource, row: dict, pixels: np.ndarray, max_pixels: int | None) -> np.ndarray | None:
    """The row's lung mask at its image's size, where the index found a usable one."""
    if row["mask_status"] == "from image":
        return nonblack_mask(pixels)
    if row["mask_status"] not in USABLE_MASKS:
        return None
    data = source.read(row["mask"])
    if hashlib.md5(data).hexdigest() != row["mask_md5"]:
        raise RawChanged(row["mask"])
    return fit_mask(mask_from_pixels(decode_image(data, row["mask"], max_pixels).pixels), pixels.shape)


class RawChanged(RuntimeError):
    def __init__(self, name: str):
        super().__init__(f"{name} changed since the source was indexed: rerun the index stage (`dvc repro`)")


def border_pattern(pixels: np.ndarray) -> str:
    """What surrounds the film: black or white padding, or image content (a scanner or source signature)."""
    band = max(1, min(pixels.shape) // 50)
    edge = np.concatenate([pixels[:band].ravel(), pixels[-band:].ravel(), pixels[:, :band].ravel(), pixels[:, -band:].ravel()])
    if (edge <= 10).mean() > 0.9:
        return "black"
    if (edge >= 245).mean() > 0.9:
        return "white"
    return "content"


# --- duplicates, groups and splits ---------------------------------------------------------------------------

def drop_cross_class_duplicates(rows: list[dict]) -> None:
    """Identical pixels under two classes are a labelling error: neither copy can be trusted.

    Near-duplicates across classes are kept (they may be two real scans) but stay in one split and
    are listed in the data report for review.
    """
    by_pixels: dict[str, list[dict]] = {}
    for row in rows:
        if row["status"] == "ok":
            by_pixels.setdefault(row["pixel_sha1"], []).append(row)
    for same in by_pixels.values():
        if len({row["label"] for row in same}) > 1:
            for row in same:
                others = ", ".join(other["name"] for other in same if other is not row)
                row.update(status="same image in several classes", detail=f"also {others}")


def hashes_of(rows: list[dict]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 4), dtype=np.uint64)
    return np.frombuffer(bytes.fromhex("".join(row["dhash"] for row in rows)), dtype=np.uint64).reshape(-1, 4)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of hash pairs within max_distance bits: within `hashes`, or between it and `others`."""
    others = hashes if others is None else others
    rows, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    chunk = 128  # bounds the (chunk, N, 4) temporary
    for start in range(0, len(hashes), chunk):
        distance = hash_distance(hashes[start:start + chunk, None, :], others[None, :, :])
        r, c = np.nonzero(distance <= max_distance)
        rows.append(r + start)
        cols.append(c)
    return np.concatenate(rows), np.concatenate(cols)


def near_duplicate_groups(rows: list[dict], max_distance: int) -> np.ndarray:
    """Component id per row of the graph 'same pixels or dHash within max_distance bits'."""
    pair_rows, pair_cols = near_duplicate_pairs(hashes_of(rows), max_distance)
    first: dict[str, int] = {}
    same = np.array([first.setdefault(row["pixel_sha1"], i) for i, row in enumerate(rows)], dtype=np.int64)
    return components(len(rows), np.concatenate([pair_rows, np.arange(len(rows))]), np.concatenate([pair_cols, same]))


def split_groups(rows: list[dict], duplicate_groups: np.ndarray) -> np.ndarray:
    """Duplicate groups joined with patient ids: each resulting group must stay inside one split."""
    # Graph nodes are images: link each image to the first image of its duplicate group and of its patient.
    first_of_group = np.unique(duplicate_groups, return_index=True)[1]
    links = [first_of_group[duplicate_groups]]
    first_of_patient: dict[str, int] = {}
    links.append(np.array([first_of_patient.setdefault(row["patient_id"], i) if row["patient_id"] else i
                           for i, row in enumerate(rows)], dtype=np.int64))
    n = len(rows)
    return components(n, np.concatenate([np.arange(n), np.arange(n)]), np.concatenate(links))


def components(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    # scipy.sparse is imported here, not at module level: only indexing needs it.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def assign_splits(groups: np.ndarray, labels: np.ndarray, fractions: SplitParams, seed: int,
                  keys: list[str] | None = None) -> np.ndarray:
    """Split index per image: whole groups, stratified by each group's majority class.

    Groups of each class are visited in a seeded pseudo-random order and each goes to the split
    furthest below its target image count, so every class gets close to the requested fractions.
    The order comes from a hash of each group's key (its first image name) rather than from its
    position, so a source with a few images added gets nearly the same split.
    """
    targets = np.array([fractions.train, fractions.val, fractions.test])
    group_ids, group_of_image = np.unique(groups, return_inverse=True)
    if keys is None:
        keys = [str(g) for g in group_ids]
    sizes = np.bincount(group_of_image)
    majority = np.array([np.bincount(labels[group_of_image == g]).argmax() for g in range(len(group_ids))])
    split_of_group = np.empty(len(group_ids), dtype=np.int64)
    for label in np.unique(majority):
        members = np.flatnonzero(majority == label)
        members = members[np.argsort([visiting_order(seed, keys[g]) for g in members], kind="stable")]
        wanted = targets * sizes[members].sum()
        filled = np.zeros(3)
        for group in members:
            split = int(np.argmax(wanted - filled))
            split_of_group[group] = split
            filled[split] += sizes[group]
    return split_of_group[group_of_image]


def visiting_order(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def group_keys(rows: list[dict], groups: np.ndarray) -> list[str]:
    """A key per group (in np.unique order) that does not depend on which other images are present.

    Names, not pixels: a copy of a source whose films differ only outside the lungs (the synthetic
    shortcut twin, a re-export with burnt-in text) gets the same split, so models trained on either are
    tested on the same patients, and its lungs view is the same data.
    """
    keys: dict[int, str] = {}
    for group, row in zip(groups, rows):
        keys[int(group)] = min(keys.get(int(group), row["name"]), row["name"])
    return [keys[g] for g in sorted(keys)]


# --- the data report -----------------------------------------------------------------------------------------

def data_report(name: str, params: SourceParams, source: RawSource, listing: Listing, classes: list[str],
                rows: list[dict], dropped: Counter, *, seed: int) -> dict:
    """What was found, kept, skipped, grouped and split, and what looks like a source shortcut.

    `seed` fixes the metadata-only baseline (cxr.data.audit), trained on the kept rows' train split.
    """
    kept = [row for row in rows if row["status"] == "ok"]
    skipped = [row for row in rows if row["status"] != "ok"]
    splits = [split for split in SPLITS if any(row["split"] == split for row in kept)] or ["all"]
    counts = {split: {label: sum(row["label"] == label and row["split"] in (split, "") for row in kept)
                      for label in classes} for split in splits}
    by_dup: dict[str, list[dict]] = {}
    for row in kept:
        by_dup.setdefault(str(row["duplicate_group"]), []).append(row)
    duplicates = [group for group in by_dup.values() if len(group) > 1]
    by_group = Counter(str(row["group"]) for row in kept)
    patients = Counter(row["patient_id"] for row in kept if row["patient_id"])
    report = {
        "source": name,
        "path": params.path,
        "kind": source.kind,
        "layout": listing.layout,
        "root": listing.root,
        "class_map": {raw: map_class(raw, params.class_map, classes)
                      for raw in sorted({entry.raw_class for entry in listing.entries})},
        "files_listed": len(listing.entries) + sum(listing.ignored.values()),
        "files_ignored": dict(listing.ignored),
        "images_dropped_by_class": dict(dropped),
        "images_kept": len(kept),
        "images_skipped": len(skipped),
        "counts": counts,
        "skipped_by_reason": dict(Counter(row["status"] for row in skipped)),
        "skipped": [{"file": row["name"], "reason": row["status"], "detail": row["detail"]} for row in skipped],
        "formats": _per_class(kept, classes, lambda row: f"{row['format']} {row['mode']} {row['bits']}-bit"),
        "sizes": {label: _size_summary([row for row in kept if row["label"] == label]) for label in classes},
        "native_sizes": _per_class(kept, classes, common_sizes(kept)),
        "borders": _per_class(kept, classes, lambda row: row["border"]),
        "lung_masks": _per_class(kept, classes, lambda row: row["mask_status"].split(":")[0]),
        "lung_mask_coverage": {label: _share([row["mask_status"] in USABLE_MASKS for row in kept if row["label"] == label])
                               for label in classes},
        "patients": len(patients),
        "patients_with_several_images": sum(count > 1 for count in patients.values()),
        "largest_split_group": max(by_group.values(), default=0),
        "exact_duplicate_groups": [sorted(row["name"] for row in group) for group in _same_pixels(kept) if len(group) > 1],
        "duplicate_groups": [sorted(row["name"] for row in group) for group in duplicates],
        "cross_class_duplicate_groups": [sorted(row["name"] for row in group) for group in duplicates
                                         if len({row["label"] for row in group}) > 1],
        "groups_crossing_own_split": [sorted(row["name"] for row in group) for group in
                                      _own_split_groups(kept).values() if len({row["own_split"] for row in group}) > 1],
        "image_statistics": statistics_summary(kept, classes),
        "metadata_baseline": metadata_baseline(kept, classes, seed),
    }
    report["shortcut_flags"] = shortcut_flags(kept, classes) + baseline_flag(report["metadata_baseline"])
    if any(row["source"] for row in kept):
        report["sources"] = _per_class(kept, classes, lambda row: row["source"] or "(unknown)")
    if any(row["subtype"] for row in kept):
        report["subtypes"] = _per_class(kept, classes, lambda row: row["subtype"] or "(unknown)")
    return report


def _same_pixels(rows: list[dict]) -> list[list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in rows:
        found.setdefault(row["pixel_sha1"], []).append(row)
    return list(found.values())


def _own_split_groups(rows: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in rows:
        if row["own_split"]:
            found.setdefault(str(row["group"]), []).append(row)
    return found


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def _per_class(rows: list[dict], classes: list[str], key: Callable[[dict], str]) -> dict[str, dict[str, int]]:
    return {label: dict(Counter(key(row) for row in rows if row["label"] == label).most_common()) for label in classes}


def _size_summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    widths = np.array([int(row["width"]) for row in rows])
    heights = np.array([int(row["height"]) for row in rows])
    return {"width_min": int(widths.min()), "width_median": float(np.median(widths)), "width_max": int(widths.max()),
            "height_min": int(heights.min()), "height_median": float(np.median(heights)), "height_max": int(heights.max())}
