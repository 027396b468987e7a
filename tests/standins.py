"""Tiny stand-ins for the raw sources the pipeline reads: synthetic films and lung masks, encoded in every format,
laid out as each supported public collection (as a folder or a zip). Shared by the tests of layouts, the index,
`cxr inspect`, the shortcut audit, predict and hostile inputs."""

from __future__ import annotations

import csv
import functools
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.data.params import IndexParams, SplitParams
from cxr.synthetic.generator import render_case

CLASSES = ["COVID-19", "Pneumonia", "Normal"]
SPLITS = ("train", "val", "test")


INDEX = IndexParams(seed=42, split=SplitParams(train=0.7, val=0.15, test=0.15), near_duplicate_distance=12,
                    max_image_pixels=50_000_000)


@functools.cache
def _render(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    image, mask = render_case(np.random.default_rng(seed), "Normal", size)
    image.setflags(write=False)
    mask.setflags(write=False)
    return image, mask


def film(seed: int, size: int = 64) -> np.ndarray:
    """A distinct, non-constant X-ray-like image per seed (distinct seeds are far apart in dHash)."""
    return _render(seed, size)[0]


def lungs(seed: int, size: int = 64) -> np.ndarray:
    return _render(seed, size)[1]


def encode(pixels: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png(pixels: np.ndarray) -> bytes:
    return encode(pixels, "PNG")


def mask_png(mask: np.ndarray, size: int | None = None, on: int = 255) -> bytes:
    """A lung mask file with `on` for lung, optionally stored at another size (as Kaggle's 256-px masks)."""
    picture = Image.fromarray(mask.astype(np.uint8) * 255)
    if size is not None and size != mask.shape[0]:
        picture = picture.resize((size, size), Image.Resampling.NEAREST)
    pixels = (np.asarray(picture) > 0).astype(np.uint8) * on
    return png(pixels)


def brighter(pixels: np.ndarray, by: int = 1) -> np.ndarray:
    return np.clip(pixels.astype(np.int16) + by, 0, 255).astype(np.uint8)


def write_folder(tree: dict[str, bytes], path: Path) -> Path:
    for name, data in tree.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    path.mkdir(parents=True, exist_ok=True)
    return path


MAC_JUNK = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)


def write_zip(tree: dict[str, bytes], path: Path, wrapper: str = "", junk: bool = False) -> Path:
    """The tree as a zip, under `wrapper/` if given; `junk` adds what macOS and Windows zip along."""
    prefix = f"{wrapper}/" if wrapper else ""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        folders = sorted({prefix + name.rsplit("/", 1)[0] + "/" for name in tree if "/" in name})
        for folder in folders:  # explicit directory members, as most zip tools write them
            archive.writestr(folder, b"")
        for name, data in tree.items():
            archive.writestr(prefix + name, data)
            if junk:
                head, _, tail = (prefix + name).rpartition("/")
                archive.writestr(f"__MACOSX/{head}/._{tail}", MAC_JUNK)
        if junk:
            archive.writestr(f"{prefix}.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(32))
            archive.writestr(f"{folders[-1]}Thumbs.db", b"\xd0\xcf\x11\xe0" + bytes(32))
    return path


RADIOGRAPHY_ROOT = "COVID-19_Radiography_Dataset/"
RADIOGRAPHY_FOLDERS = ("COVID", "Normal", "Viral Pneumonia", "Lung_Opacity")


def radiography_tree(n: int = 4, size: int = 64, mask_size: int = 64, seed: int = 1000, mask_on: int = 255,
                     root: str = RADIOGRAPHY_ROOT) -> dict[str, bytes]:
    tree = {}
    for k, folder in enumerate(RADIOGRAPHY_FOLDERS):
        for i in range(1, n + 1):
            s = seed + 100 * k + i
            tree[f"{root}{folder}/images/{folder}-{i}.png"] = png(film(s, size))
            tree[f"{root}{folder}/masks/{folder}-{i}.png"] = mask_png(lungs(s, size), mask_size, mask_on)
    return tree


QU_ROOT = "COVID-QU-Ex/Lung Segmentation Data/Lung Segmentation Data/"
QU_INFECTION = "COVID-QU-Ex/Infection Segmentation Data/Infection Segmentation Data/"


QU_PER_SPLIT = {"Train": 3, "Val": 1, "Test": 1}
QU_CLASSES = ("COVID-19", "Non-COVID", "Normal")


def covid_qu_ex_tree(seed: int = 2000) -> dict[str, bytes]:
    tree = {}
    for k, cls in enumerate(QU_CLASSES):
        number = 0
        for split, n in QU_PER_SPLIT.items():
            for _ in range(n):
                number += 1
                s = seed + 100 * k + number
                name = f"{cls.replace('-', '_')} ({number}).png"
                tree[f"{QU_ROOT}{split}/{cls}/images/{name}"] = png(film(s))
                tree[f"{QU_ROOT}{split}/{cls}/lung masks/{name}"] = mask_png(lungs(s))
                if number == 1:
                    # The Infection Segmentation subset repeats images of the lung subset: never indexed twice.
                    tree[f"{QU_INFECTION}{split}/{cls}/images/{name}"] = png(film(s))
                    tree[f"{QU_INFECTION}{split}/{cls}/lung masks/{name}"] = mask_png(lungs(s))
                    tree[f"{QU_INFECTION}{split}/{cls}/infection masks/{name}"] = mask_png(lungs(s))
    return tree


KERMANY_NORMAL = {"train": 3, "test": 2, "val": 1}


# Person 1 has films in train and test: the source's own split leaks that patient.
KERMANY_PNEUMONIA = {"train": ["person1_bacteria_1", "person1_bacteria_2", "person2_virus_3"],
                     "test": ["person1_virus_4", "person3_bacteria_5"],
                     "val": ["person4_virus_6"]}


def kermany_tree(seed: int = 3000, nested: bool = True) -> dict[str, bytes]:
    tree = {}
    number = 0
    for split, n in KERMANY_NORMAL.items():
        for _ in range(n):
            number += 1
            tree[f"chest_xray/{split}/NORMAL/IM-{number:04d}-0001.jpeg"] = encode(film(seed + number), "JPEG", quality=90)
    for split, stems in KERMANY_PNEUMONIA.items():
        for stem in stems:
            number += 1
            tree[f"chest_xray/{split}/PNEUMONIA/{stem}.jpeg"] = encode(film(seed + number), "JPEG", quality=90)
    if nested:
        # Kaggle's zip holds the whole dataset a second time one level deeper.
        tree.update({name.replace("chest_xray/", "chest_xray/chest_xray/", 1): data for name, data in list(tree.items())})
    return tree


STUDY_FOLDERS = {"CXR Images": "COVID-19", "CXR Images Normal": "Normal", "CXR Images Pneumonia": "Pneumonia"}


def study_tree(n: int = 4, seed: int = 4000) -> dict[str, bytes]:
    return {f"{folder}/person{seed + 10 * k + i}_{i}.png": png(film(seed + 10 * k + i))
            for k, folder in enumerate(STUDY_FOLDERS) for i in range(1, n + 1)}


def segmented_tree(n: int = 4, seed: int = 5000, size: int = 64) -> dict[str, bytes]:
    """Already lung-segmented films: black everywhere but the lungs."""
    tree = {}
    for k, cls in enumerate(CLASSES):
        for i in range(1, n + 1):
            s = seed + 10 * k + i
            tree[f"{cls}/seg-{i}.png"] = png(np.where(lungs(s, size), film(s, size), 0).astype(np.uint8))
    return tree


def class_folders_tree(n: int = 4, seed: int = 6000) -> dict[str, bytes]:
    return {f"{cls}/img-{i}.png": png(film(seed + 100 * k + i)) for k, cls in enumerate(CLASSES) for i in range(1, n + 1)}


def xlsx(rows: list[list[str]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8-sig")


SIRM = "https://sirm.org/category/senza-categoria/covid-19/"
RSNA = "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"


VIRAL = "https://www.kaggle.com/paultimothymooney/chest-xray-pneumonia"


def dicom(stored: np.ndarray, photometric: str = "MONOCHROME2", syntax: str | None = None,
          pixel_data: bytes | None = None, **elements) -> bytes:
    """A DICOM Part 10 file of 16-bit allocated, 12-bit stored unsigned pixels."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = FileDataset("film.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.PixelData = pixel_data if pixel_data is not None else stored.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
