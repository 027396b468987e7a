"""Validate, deduplicate and split one raw dataset into compact arrays.

    python -m stages.prepare --dataset full

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
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from stages.datasets import (
    IMAGE_SUFFIXES, SplitArrays, UnreadableImage, difference_hash, hash_distance, make_view, read_grayscale, read_mask,
)
from stages.files import atomic_dir, atomic_path, write_json
from stages.params import DatasetParams, PrepareParams, SplitParams, stage_arguments
from stages.paths import SPLITS, data_report_file, manifest_file, prepared_dir, split_file, view_file


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
    image: np.ndarray
    mask: np.ndarray


def main(argv: list[str] | None = None) -> None:
    params, args = stage_arguments(__doc__, argv, dataset=True)
    dataset = params.dataset[args.dataset]
    folders = find_class_folders(args.dataset, dataset, params.classes)

    items, skipped = read_items(folders, dataset, params.prepare)
    items, conflicts = drop_cross_class_duplicates(items)
    skipped += conflicts
    counts = Counter(item.label for item in items)
    empty = [name for index, name in enumerate(params.classes) if counts[index] == 0]
    if empty:
        raise SystemExit(f"error: dataset {args.dataset!r} has no usable images of class {empty} "
                         f"(see the skipped files above); check dataset.{args.dataset}.class_folders and {dataset.raw_dir}")

    duplicate_groups = near_duplicate_groups(items, params.prepare.near_duplicate_distance)
    groups = split_groups(items, duplicate_groups)
    labels = np.array([item.label for item in items])
    splits = assign_splits(groups, labels, params.prepare.split, params.seed, group_keys(items, groups))
    for index, split in enumerate(SPLITS):
        if not (splits == index).any():
            raise SystemExit(f"error: the {split} split of {args.dataset!r} would be empty with only {len(items)} usable "
                             f"images; add images or change prepare.split")

    view = {"view": dataset.view, "image_size": params.prepare.image_size, "lung_margin": params.prepare.lung_margin}
    write_outputs(args.dataset, items, splits, groups, view)
    report = data_report(args.dataset, dataset, params.prepare, params.classes, items, splits, skipped, duplicate_groups, groups)
    write_json(data_report_file(args.dataset), report)
    print(f"{args.dataset}: kept {len(items)} images, skipped {len(skipped)}, "
          f"{len(report['duplicate_groups'])} duplicate groups; "
          + ", ".join(f"{split} {sum(report['counts'][split].values())}" for split in SPLITS))


def find_class_folders(name: str, dataset: DatasetParams, classes: list[str]) -> list[ClassFolder]:
    """Checks the whole folder layout up front, so a wrong path fails before any image is read."""
    raw = Path(dataset.raw_dir)
    if not raw.is_dir():
        raise SystemExit(f"error: dataset.{name}.raw_dir {raw} is not a folder; run `dvc repro` (synthetic data) "
                         f"or point it at a downloaded dataset")
    found = []
    for folder, label in dataset.class_folders.items():
        path = raw / folder
        if not path.is_dir():
            present = sorted(p.name for p in raw.iterdir() if p.is_dir())
            raise SystemExit(f"error: dataset.{name}.class_folders names {folder!r} but {path} does not exist "
                             f"(folders there: {present})")
        images = path / "images" if (path / "images").is_dir() else path
        masks = path / "masks" if (path / "masks").is_dir() else None
        if masks is None and dataset.view == "lungs":
            raise SystemExit(f"error: the lungs view of dataset {name!r} needs lung masks, but {path / 'masks'} does not exist")
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
        image = read_grayscale(path)
    except UnreadableImage as err:
        raise UnreadableImage(f"unreadable image: {err}") from None
    mask_path = find_mask(folder.masks, path)
    if mask_path is None:
        if view == "lungs":
            raise UnreadableImage(f"no lung mask: expected {folder.masks}/{path.stem}.*")
        mask, has_mask = np.zeros(image.shape, dtype=bool), False
    else:
        try:
            mask = read_mask(mask_path)
        except UnreadableImage as err:
            raise UnreadableImage(f"unreadable mask: {mask_path.name}: {err}") from None
        if mask.shape != image.shape:
            raise UnreadableImage(f"mask size differs from image: mask {mask.shape[1]}x{mask.shape[0]}, "
                                  f"image {image.shape[1]}x{image.shape[0]}")
        if view == "lungs" and not mask.any():
            raise UnreadableImage("empty lung mask")
        has_mask = True
    match = pattern.search(path.name) if pattern else None
    stored_image, stored_mask = make_view(image, mask, view, prepare.image_size, prepare.lung_margin)
    return Item(
        name=name,
        source=path,
        label=folder.label,
        patient=match.group(1) if match else None,
        sha1=hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest(),
        dhash=difference_hash(image),
        has_mask=has_mask,
        image=stored_image,
        mask=stored_mask,
    )


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


def write_outputs(dataset: str, items: list[Item], splits: np.ndarray, groups: np.ndarray, view: dict) -> None:
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
        manifest = pd.DataFrame({
            "name": [item.name for item in items],
            "label": [item.label for item in items],
            "split": [SPLITS[s] for s in splits],
            "group": groups,
            "patient_id": [item.patient for item in items],
            "has_mask": [item.has_mask for item in items],
            "sha1": [item.sha1 for item in items],
            "dhash": [item.dhash.tobytes().hex() for item in items],
        })
        with atomic_path(out / manifest_file(dataset).name) as tmp:
            manifest.to_csv(tmp, index=False)


def data_report(name: str, dataset: DatasetParams, prepare: PrepareParams, classes: list[str], items: list[Item],
                splits: np.ndarray, skipped: list[dict], duplicate_groups: np.ndarray, groups: np.ndarray) -> dict:
    counts = {split: {label: 0 for label in classes} for split in SPLITS}
    for item, split in zip(items, splits):
        counts[SPLITS[split]][classes[item.label]] += 1
    members: dict[int, list[Item]] = {}
    for group, item in zip(duplicate_groups, items):
        members.setdefault(int(group), []).append(item)
    duplicates = [group for group in members.values() if len(group) > 1]
    patients = Counter(item.patient for item in items if item.patient is not None)
    return {
        "dataset": name,
        "view": dataset.view,
        "raw_dir": dataset.raw_dir,
        "image_size": prepare.image_size,
        "images_kept": len(items),
        "images_skipped": len(skipped),
        "images_without_mask": sum(not item.has_mask for item in items),
        "counts": counts,
        "skipped_by_reason": dict(Counter(entry["reason"] for entry in skipped)),
        "skipped": skipped,
        "patients": len(patients),
        "patients_with_several_images": sum(count > 1 for count in patients.values()),
        # A huge group means the duplicate threshold chains unrelated images together: lower it.
        "largest_split_group": int(np.bincount(groups).max()),
        "duplicate_groups": [sorted(item.name for item in group) for group in duplicates],
        "cross_class_duplicate_groups": [sorted(item.name for item in group) for group in duplicates
                                         if len({item.label for item in group}) > 1],
    }


if __name__ == "__main__":
    main()
