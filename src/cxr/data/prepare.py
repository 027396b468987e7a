"""Validate, deduplicate and split one raw dataset into compact arrays.

Reads `<raw_dir>/<class folder>/images/*` (or the class folder itself when it has no images/ folder)
and the lung masks of the same name in `<class folder>/masks/`. Unusable files are skipped and listed
in the data report. Exact and near-duplicate images, and images of one patient, form groups that
never cross a split; splits are stratified by class. No resampling happens here: class balance is
handled inside training only, after the split.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cxr.data.arrays import SplitArrays
from cxr.data.params import DatasetParams, PrepareParams, SplitParams
from cxr.data.views import fit_mask, make_view, same_aspect
from cxr.io.files import atomic_dir, atomic_path, write_json
from cxr.io.images import IMAGE_SUFFIXES, UnreadableImage, difference_hash, hash_distance, read_grayscale, read_mask
from cxr.paths import SPLITS, data_report_file, manifest_file, prepared_dir, split_file, view_file


class DatasetError(ValueError):
    """The dataset cannot be prepared at all; the message says why and what to change."""


@dataclass(frozen=True)
class ClassFolder:
    folder: str
    label: int
    images: Path
    masks: Path | None


@dataclass
class Item:
    name: str  # "<class folder>/<file name>", unique within the dataset
    source: Path
    label: int
    patient: str | None
    sha1: str
    dhash: np.ndarray  # 256-bit difference hash packed into four uint64 words
    has_mask: bool
    mask_note: str | None  # what was wrong with the mask of an image that was kept anyway
    image: np.ndarray
    mask: np.ndarray


def prepare_dataset(name: str, dataset: DatasetParams, prepare: PrepareParams, classes: list[str]) -> dict:
    """Writes data/prepared/<name>/ and the data report; returns the report.

    On a fatal problem the report (with every skipped file) is written first, then DatasetError raised.
    """
    folders = find_class_folders(name, dataset, classes)
    items, skipped = read_items(folders, dataset, prepare)
    items, conflicts = drop_cross_class_duplicates(items)
    skipped += conflicts

    def fail(message: str) -> DatasetError:
        report = data_report(name, dataset, prepare, classes, items, None, skipped, None, None)
        write_json(data_report_file(name), {"error": message, **report})
        return DatasetError(f"{message} (skipped files and reasons: {data_report_file(name)})")

    counts = Counter(item.label for item in items)
    empty = [label for index, label in enumerate(classes) if counts[index] == 0]
    if empty:
        raise fail(f"dataset {name!r} has no usable images of class {empty}; "
                   f"check dataset.{name}.class_folders and {dataset.raw_dir}")

    duplicate_groups = near_duplicate_groups(items, prepare.near_duplicate_distance)
    groups = split_groups(items, duplicate_groups)
    labels = np.array([item.label for item in items])
    splits = assign_splits(groups, labels, prepare.split, prepare.seed, group_keys(items, groups))
    for index, split in enumerate(SPLITS):
        if not (splits == index).any():
            raise fail(f"the {split} split of {name!r} would be empty with only {len(items)} usable images; "
                       f"add images or change prepare.split")

    view = {"view": dataset.view, "image_size": prepare.image_size, "lung_margin": prepare.lung_margin}
    write_outputs(name, items, splits, groups, view)
    report = data_report(name, dataset, prepare, classes, items, splits, skipped, duplicate_groups, groups)
    write_json(data_report_file(name), report)
    return report


def find_class_folders(name: str, dataset: DatasetParams, classes: list[str]) -> list[ClassFolder]:
    """Checks the whole folder layout up front, so a wrong path fails before any image is read."""
    raw = Path(dataset.raw_dir)
    if not raw.is_dir():
        raise DatasetError(f"dataset.{name}.raw_dir {raw} is not a folder; run `dvc repro` (synthetic data) "
                           f"or point it at a downloaded dataset")
    found = []
    for folder, label in dataset.class_folders.items():
        path = raw / folder
        if not path.is_dir():
            present = sorted(p.name for p in raw.iterdir() if p.is_dir())
            raise DatasetError(f"dataset.{name}.class_folders names {folder!r} but {path} does not exist "
                               f"(folders there: {present})")
        images = path / "images" if (path / "images").is_dir() else path
        masks = path / "masks" if (path / "masks").is_dir() else None
        if masks is None and dataset.view == "lungs":
            raise DatasetError(f"the lungs view of dataset {name!r} needs lung masks, but {path / 'masks'} does not exist")
        found.append(ClassFolder(folder, classes.index(label), images, masks))
    return found


def read_items(folders: list[ClassFolder], dataset: DatasetParams, prepare: PrepareParams) -> tuple[list[Item], list[dict]]:
    files = [(folder, path) for folder in folders for path in sorted(folder.images.iterdir()) if path.is_file()]
    pattern = re.compile(dataset.patient_id_pattern) if dataset.patient_id_pattern else None
    items, skipped = [], []
    for folder, path in tqdm(files, desc="reading images", unit="img", disable=None):
        name = f"{folder.folder}/{path.name}"
        try:
            items.append(read_item(name, path, folder, dataset.view, prepare, pattern))
        except UnreadableImage as err:
            reason, _, detail = str(err).partition(": ")
            skipped.append({"file": name, "reason": reason, "detail": detail})
    shown = 20
    for entry in skipped[:shown]:
        print(f"skipped {entry['file']}: {entry['reason']}" + (f" ({entry['detail']})" if entry["detail"] else ""))
    if len(skipped) > shown:
        print(f"... and {len(skipped) - shown} more skipped files: all are listed in the data report")
    return items, skipped


def read_item(name: str, path: Path, folder: ClassFolder, view: str, prepare: PrepareParams,
              pattern: re.Pattern | None) -> Item:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UnreadableImage(f"not an image file: suffix {path.suffix or '(none)'}")
    try:
        image = read_grayscale(path, prepare.max_image_pixels)
    except UnreadableImage as err:
        raise UnreadableImage(f"unreadable image: {err}") from None
    if image.min() == image.max():
        raise UnreadableImage(f"constant image: every pixel is {image.min()}, no X-ray content")
    mask, mask_note = read_item_mask(folder.masks, path, image.shape, view, prepare.max_image_pixels)
    match = pattern.search(path.name) if pattern else None
    stored_image, stored_mask = make_view(image, mask, view, prepare.image_size, prepare.lung_margin)
    return Item(
        name=name,
        source=path,
        label=folder.label,
        patient=match.group(1) if match else None,
        sha1=hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest(),
        dhash=difference_hash(image),
        has_mask=bool(mask.any()),
        mask_note=mask_note,
        image=stored_image,
        mask=stored_mask,
    )


def read_item_mask(masks: Path | None, image_path: Path, shape: tuple[int, int], view: str,
                   max_pixels: int) -> tuple[np.ndarray, str | None]:
    """The image's lung mask at the image's size, and a note on what had to be done about it.

    The lungs view cannot do without a usable mask (UnreadableImage); the full view keeps the image
    with an empty mask and the note, so the data report counts it.
    """
    mask_path = find_mask(masks, image_path)
    try:
        if mask_path is None:
            raise UnreadableImage(f"no lung mask: expected {masks}/{image_path.stem}.*" if masks else "no lung mask")
        try:
            mask = read_mask(mask_path, max_pixels)
        except UnreadableImage as err:
            raise UnreadableImage(f"unreadable mask: {mask_path.name}: {err}") from None
        note = None
        if mask.shape != shape:
            described = f"mask {mask.shape[1]}x{mask.shape[0]}, image {shape[1]}x{shape[0]}"
            if not same_aspect(mask.shape, shape):
                # Stretching it would put lungs where there are none.
                raise UnreadableImage(f"mask shape differs from image: {described}")
            mask, note = fit_mask(mask, shape), f"mask resized to its image: {described}"
        if view == "lungs" and not mask.any():
            raise UnreadableImage("empty lung mask")
        return mask, note
    except UnreadableImage as err:
        if view == "lungs":
            raise
        return np.zeros(shape, dtype=bool), str(err)


def find_mask(masks: Path | None, image: Path) -> Path | None:
    if masks is None:
        return None
    if (masks / image.name).is_file():
        return masks / image.name
    candidates = sorted(masks.glob(f"{glob_escape(image.stem)}.*"))
    return candidates[0] if candidates else None


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def near_duplicate_groups(items: list[Item], max_distance: int) -> np.ndarray:
    """Component id per image of the graph 'same pixels or dHash within max_distance bits'."""
    n = len(items)
    hashes = np.stack([item.dhash for item in items]) if items else np.zeros((0, 4), dtype=np.uint64)
    rows, cols = [], []
    chunk = 256
    for start in range(0, n, chunk):
        distance = hash_distance(hashes[start:start + chunk, None, :], hashes[None, :, :])
        r, c = np.nonzero(distance <= max_distance)
        rows.append(r + start)
        cols.append(c)
    by_sha: dict[str, int] = {}
    for index, item in enumerate(items):
        first = by_sha.setdefault(item.sha1, index)
        rows.append(np.array([index]))
        cols.append(np.array([first]))
    return _components(n, np.concatenate(rows), np.concatenate(cols))


def drop_cross_class_duplicates(items: list[Item]) -> tuple[list[Item], list[dict]]:
    """Identical pixels under two classes are a labelling error: neither copy can be trusted.

    Near-duplicates across classes are kept (they may be two real scans) but stay in one split and
    are listed in the data report for review.
    """
    classes_of_pixels: dict[str, set[int]] = {}
    for item in items:
        classes_of_pixels.setdefault(item.sha1, set()).add(item.label)
    keep, dropped = [], []
    for item in items:
        if len(classes_of_pixels[item.sha1]) > 1:
            others = [other.name for other in items if other.sha1 == item.sha1 and other is not item]
            dropped.append({"file": item.name, "reason": "same image in several classes", "detail": f"also {others}"})
        else:
            keep.append(item)
    return keep, dropped


def split_groups(items: list[Item], duplicate_groups: np.ndarray) -> np.ndarray:
    """Duplicate groups joined with patient ids: each resulting group must stay inside one split."""
    # Graph nodes are images: link each image to the first image of its duplicate group and of its patient.
    first_of_group = np.unique(duplicate_groups, return_index=True)[1]
    rows, cols = [np.arange(len(items))], [first_of_group[duplicate_groups]]
    first_of_patient: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.patient is not None:
            rows.append(np.array([index]))
            cols.append(np.array([first_of_patient.setdefault(item.patient, index)]))
    return _components(len(items), np.concatenate(rows), np.concatenate(cols))


def _components(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    # scipy.sparse is imported here, not at module level: only preparation needs it.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def assign_splits(groups: np.ndarray, labels: np.ndarray, fractions: SplitParams, seed: int,
                  keys: list[str] | None = None) -> np.ndarray:
    """Split index per image: whole groups, stratified by each group's majority class.

    Groups of each class are visited in a seeded pseudo-random order and each goes to the split
    furthest below its target image count, so every class gets close to the requested fractions.
    The order comes from a hash of each group's key (its smallest image hash) rather than from its
    position, so the full and lungs views of one raw dataset, or a dataset with a few images added,
    get the same or nearly the same splits.
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


def group_keys(items: list[Item], groups: np.ndarray) -> list[str]:
    """A key per group (in np.unique order) that does not depend on which other images are present."""
    keys: dict[int, str] = {}
    for group, item in zip(groups, items):
        keys[int(group)] = min(keys.get(int(group), item.sha1), item.sha1)
    return [keys[g] for g in sorted(keys)]


MANIFEST_COLUMNS = ("name", "label", "split", "group", "patient_id", "has_mask", "sha1", "dhash")


def write_outputs(dataset: str, items: list[Item], splits: np.ndarray, groups: np.ndarray, view: dict) -> None:
    import csv

    with atomic_dir(prepared_dir(dataset)) as out:
        write_json(out / view_file(dataset).name, view)
        for index, split in enumerate(SPLITS):
            chosen = [item for item, s in zip(items, splits) if s == index]
            SplitArrays(
                images=np.stack([item.image for item in chosen]),
                masks=np.stack([item.mask for item in chosen]),
                labels=np.array([item.label for item in chosen], dtype=np.int64),
                names=np.array([item.name for item in chosen]),
            ).save(out / split_file(dataset, split).name)
        with atomic_path(out / manifest_file(dataset).name) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(MANIFEST_COLUMNS)
            for item, split, group in zip(items, splits, groups):
                writer.writerow([item.name, item.label, SPLITS[split], int(group), item.patient or "",
                                 item.has_mask, item.sha1, item.dhash.tobytes().hex()])


def data_report(name: str, dataset: DatasetParams, prepare: PrepareParams, classes: list[str], items: list[Item],
                splits: np.ndarray | None, skipped: list[dict], duplicate_groups: np.ndarray | None,
                groups: np.ndarray | None) -> dict:
    """What was kept, skipped and grouped; without splits (a failed run), counts per class only."""
    if splits is None:
        counts: dict = {"all": {label: 0 for label in classes}}
        for item in items:
            counts["all"][classes[item.label]] += 1
    else:
        counts = {split: {label: 0 for label in classes} for split in SPLITS}
        for item, split in zip(items, splits):
            counts[SPLITS[split]][classes[item.label]] += 1
    patients = Counter(item.patient for item in items if item.patient is not None)
    report = {
        "dataset": name,
        "view": dataset.view,
        "raw_dir": dataset.raw_dir,
        "image_size": prepare.image_size,
        "images_kept": len(items),
        "images_skipped": len(skipped),
        "images_without_mask": sum(not item.has_mask for item in items),
        "masks_resized": sum(item.mask_note is not None and item.mask_note.startswith("mask resized") for item in items),
        "counts": counts,
        "skipped_by_reason": dict(Counter(entry["reason"] for entry in skipped)),
        "skipped": skipped,
        "mask_notes": [{"file": item.name, "note": item.mask_note} for item in items if item.mask_note],
        "patients": len(patients),
        "patients_with_several_images": sum(count > 1 for count in patients.values()),
    }
    if duplicate_groups is not None and groups is not None:
        members: dict[int, list[Item]] = {}
        for group, item in zip(duplicate_groups, items):
            members.setdefault(int(group), []).append(item)
        duplicates = [group for group in members.values() if len(group) > 1]
        # A huge group means the duplicate threshold chains unrelated images together: lower it.
        report["largest_split_group"] = int(np.bincount(groups).max())
        report["duplicate_groups"] = [sorted(item.name for item in group) for group in duplicates]
        report["cross_class_duplicate_groups"] = [sorted(item.name for item in group) for group in duplicates
                                                  if len({item.label for item in group}) > 1]
    return report
