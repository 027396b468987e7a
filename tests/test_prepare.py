"""prepare: bad files are skipped and reported, groups never cross splits, splits are stratified."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr.data import prepare
from cxr.data.arrays import SplitArrays
from cxr.data.params import SplitParams
from cxr.data.views import lung_box, make_view
from cxr.io.images import read_grayscale
from cxr.paths import SPLITS, data_report_file, manifest_file, split_file, view_file
from tests.conftest import run_stage, tiny_params, write_params


@pytest.fixture
def raw(tiny_raw: Path, workdir: Path) -> Path:
    """A private copy of the tiny raw dataset inside the working directory, ready to be damaged."""
    copy = workdir / "data" / "raw" / "synthetic"
    shutil.copytree(tiny_raw, copy)
    return copy


def _run(workdir: Path, dataset: str, **overrides) -> dict:
    write_params(workdir, tiny_params(**overrides))
    run_stage("prepare", "--dataset", dataset)
    return json.loads(data_report_file(dataset).read_text())


def _film(width: int, height: int) -> Image.Image:
    """A non-constant grayscale image (constant ones are skipped as blank)."""
    return Image.fromarray((np.add.outer(np.arange(height), np.arange(width)) % 200 + 20).astype(np.uint8))


def test_bad_files_are_skipped_and_reported(raw, workdir):
    covid = raw / "COVID-19"
    (covid / "images" / "empty.png").write_bytes(b"")
    (covid / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (covid / "images" / "notes.txt").write_text("not an image")
    _film(64, 64).save(covid / "images" / "no_mask.png")
    _film(96, 96).save(covid / "images" / "wrong_mask.png")
    Image.new("L", (50, 70), 255).save(covid / "masks" / "wrong_mask.png")
    _film(96, 96).save(covid / "images" / "corrupt_mask.png")
    (covid / "masks" / "corrupt_mask.png").write_bytes(b"garbage")
    Image.new("L", (96, 96), 0).save(covid / "images" / "black.png")
    Image.new("L", (96, 96), 255).save(covid / "masks" / "black.png")
    report = _run(workdir, "lungs")
    reasons = {entry["file"]: entry["reason"] for entry in report["skipped"]}
    assert reasons == {
        "COVID-19/empty.png": "unreadable image",
        "COVID-19/corrupt.png": "unreadable image",
        "COVID-19/notes.txt": "not an image file",
        "COVID-19/no_mask.png": "no lung mask",
        "COVID-19/wrong_mask.png": "mask shape differs from image",
        "COVID-19/corrupt_mask.png": "unreadable mask",
        "COVID-19/black.png": "constant image",
    }
    assert report["skipped_by_reason"]["unreadable image"] == 2
    manifest = pd.read_csv(manifest_file("lungs"))
    assert not set(reasons) & set(manifest["name"])
    assert report["images_kept"] == len(manifest) > 0


def test_full_view_keeps_images_without_masks(raw, workdir):
    _film(80, 80).save(raw / "Normal" / "images" / "no_mask.png")
    report = _run(workdir, "full")
    assert report["images_skipped"] == 0 and report["images_without_mask"] == 1
    manifest = pd.read_csv(manifest_file("full")).set_index("name")
    assert not manifest.loc["Normal/no_mask.png", "has_mask"]


def test_masks_of_another_size_are_resized_to_their_image(raw, workdir):
    """The Kaggle Radiography Database ships 256-px masks for its 299-px images."""
    _film(299, 299).save(raw / "Normal" / "images" / "kaggle.png")
    small = np.zeros((256, 256), dtype=np.uint8)
    small[40:200, 30:110] = 255
    small[40:200, 146:226] = 255
    Image.fromarray(small).save(raw / "Normal" / "masks" / "kaggle.png")
    _film(120, 90).save(raw / "Normal" / "images" / "odd_mask.png")
    Image.new("L", (50, 50), 255).save(raw / "Normal" / "masks" / "odd_mask.png")
    for view in ("full", "lungs"):
        report = _run(workdir, view)
        notes = {entry["file"]: entry["note"] for entry in report["mask_notes"]}
        assert notes["Normal/kaggle.png"] == "mask resized to its image: mask 256x256, image 299x299"
        assert report["masks_resized"] == 1
        manifest = pd.read_csv(manifest_file(view)).set_index("name")
        assert manifest.loc["Normal/kaggle.png", "has_mask"]
        names = [name for split in SPLITS for name in SplitArrays.load(split_file(view, split)).names]
        assert "Normal/kaggle.png" in names
    # A mask of another shape cannot be placed on its image: the full view keeps the image without it,
    # the lungs view, which needs it, skips the image.
    full = _run(workdir, "full")
    notes = {entry["file"]: entry["note"] for entry in full["mask_notes"]}
    assert notes["Normal/odd_mask.png"].startswith("mask shape differs from image: mask 50x50, image 120x90")
    assert not pd.read_csv(manifest_file("full")).set_index("name").loc["Normal/odd_mask.png", "has_mask"]
    lungs_skipped = {entry["file"]: entry["reason"] for entry in _run(workdir, "lungs")["skipped"]}
    assert lungs_skipped == {"Normal/odd_mask.png": "mask shape differs from image"}
    assert full["images_skipped"] == 0


def _png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG that claims width x height pixels: all a decompression bomb needs to open."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_skipped_with_the_limit_named(raw, workdir):
    (raw / "COVID-19" / "images" / "bomb.png").write_bytes(_png_header(20000, 20000))
    report = _run(workdir, "full")
    skipped = {entry["file"]: entry for entry in report["skipped"]}
    assert skipped["COVID-19/bomb.png"]["reason"] == "unreadable image"
    detail = skipped["COVID-19/bomb.png"]["detail"]
    assert "too large: 20000x20000 px" in detail and "prepare.max_image_pixels" in detail
    # Under a limit that admits its size, the file is decoded and its missing pixel data found.
    report = _run(workdir, "full", **{"prepare.max_image_pixels": 10**9})
    assert {entry["file"]: entry["reason"] for entry in report["skipped"]} == {"COVID-19/bomb.png": "unreadable image"}


def test_groups_stay_in_one_split_and_classes_are_stratified(raw, workdir):
    report = _run(workdir, "full")
    manifest = pd.read_csv(manifest_file("full"))
    assert manifest.groupby("group")["split"].nunique().max() == 1
    assert manifest.dropna(subset=["patient_id"]).groupby("patient_id")["split"].nunique().max() == 1
    # Every planted near-duplicate (x*.png) is found and lands with its source.
    planted = manifest[manifest["name"].str.contains("/x")]
    assert len(planted) > 0
    for group in report["duplicate_groups"]:
        assert len({manifest.set_index("name").loc[name, "split"] for name in group}) == 1
    duplicated = {name for group in report["duplicate_groups"] for name in group}
    assert set(planted["name"]) <= duplicated
    for split in SPLITS:
        counts = report["counts"][split]
        assert all(count > 0 for count in counts.values()), f"{split} misses a class: {counts}"


def test_split_arrays_are_aligned_and_lungs_view_is_black_outside_the_mask(raw, workdir):
    _run(workdir, "lungs")
    total = 0
    for split in SPLITS:
        arrays = SplitArrays.load(split_file("lungs", split))
        assert arrays.images.dtype == np.uint8 and arrays.images.shape[1:] == (48, 48)
        assert arrays.masks.shape == arrays.images.shape and arrays.masks.dtype == bool
        assert len(arrays.labels) == len(arrays.names) == len(arrays.images)
        assert (arrays.images[~arrays.masks] == 0).all()
        assert arrays.masks.any(axis=(1, 2)).all()
        total += len(arrays)
    assert total == len(pd.read_csv(manifest_file("lungs")))
    assert json.loads(view_file("lungs").read_text()) == {"view": "lungs", "image_size": 48, "lung_margin": 0.05}


def test_same_image_in_two_classes_is_dropped(raw, workdir):
    source = sorted((raw / "Normal" / "images").glob("p*.png"))[0]
    shutil.copy(source, raw / "Pneumonia" / "images" / "copy.png")
    shutil.copy(raw / "Normal" / "masks" / source.name, raw / "Pneumonia" / "masks" / "copy.png")
    report = _run(workdir, "full")
    dropped = {entry["file"] for entry in report["skipped"] if entry["reason"] == "same image in several classes"}
    assert dropped == {"Pneumonia/copy.png", f"Normal/{source.name}"}


def test_class_without_usable_images_stops_with_a_clear_message(raw, workdir):
    for path in (raw / "Pneumonia" / "images").iterdir():
        path.write_bytes(b"")
    write_params(workdir, tiny_params())
    with pytest.raises(SystemExit, match=r"no usable images of class \['Pneumonia'\]"):
        run_stage("prepare", "--dataset", "full")
    # The message points at the data report: it must exist and list every skipped file.
    report = json.loads(data_report_file("full").read_text())
    assert "no usable images" in report["error"]
    assert {entry["file"] for entry in report["skipped"]} == {f"Pneumonia/{p.name}" for p in (raw / "Pneumonia" / "images").iterdir()}


def test_missing_class_folder_stops_before_reading(raw, workdir):
    shutil.rmtree(raw / "Normal")
    write_params(workdir, tiny_params())
    with pytest.raises(SystemExit, match=r"names 'Normal' but .*Normal does not exist"):
        run_stage("prepare", "--dataset", "full")


def test_assign_splits_keeps_groups_whole_and_fractions_close():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, size=600)
    groups = np.repeat(np.arange(600), sizes)
    labels = np.repeat(rng.integers(0, 3, size=600), sizes)
    splits = prepare.assign_splits(groups, labels, SplitParams(train=0.7, val=0.15, test=0.15), seed=1)
    assert all(len(set(splits[groups == g])) == 1 for g in range(600))
    for label in range(3):
        share = np.bincount(splits[labels == label], minlength=3) / (labels == label).sum()
        assert share == pytest.approx([0.7, 0.15, 0.15], abs=0.02)
    assert np.array_equal(splits, prepare.assign_splits(groups, labels, SplitParams(train=0.7, val=0.15, test=0.15), seed=1))


def test_lung_view_crop_keeps_mask_aligned():
    image = np.full((100, 120), 200, dtype=np.uint8)
    mask = np.zeros((100, 120), dtype=bool)
    mask[20:60, 30:50] = True
    mask[25:70, 70:95] = True
    image[mask] = 60
    stored, stored_mask = make_view(image, mask, "lungs", 64, margin=0.1)
    assert stored.shape == stored_mask.shape == (64, 64)
    assert (stored[~stored_mask] == 0).all()
    assert abs(int(stored[stored_mask].mean()) - 60) <= 2
    left, top, right, bottom = lung_box(mask, margin=0.1)
    assert right - left == bottom - top  # square, so no distortion
    assert left <= 30 and right >= 95 and top <= 20 and bottom >= 70
    full, full_mask = make_view(image, mask, "full", 64, margin=0.1)
    # Padded to a 120 x 120 square, not stretched: the lungs keep their area share of the square.
    assert full_mask.mean() == pytest.approx(mask.sum() / 120**2, abs=0.01)
    assert (full[:4] == 0).all() and (full[-4:] == 0).all(), "black bands above and below the 100-px-high image"


def test_prepare_output_bytes_depend_only_on_the_data(raw, workdir):
    """Same input, same bytes: otherwise DVC would see new data and retrain every model."""
    _run(workdir, "full")
    first = {split: split_file("full", split).read_bytes() for split in SPLITS}
    _run(workdir, "full")
    assert all(split_file("full", split).read_bytes() == first[split] for split in SPLITS)


def test_reads_16_bit_and_colour_images(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(ramp).save(tmp_path / "sixteen.png")
    pixels = read_grayscale(tmp_path / "sixteen.png")
    assert pixels.dtype == np.uint8 and pixels.min() == 0 and pixels.max() == 255
    assert (np.diff(pixels.astype(int).ravel()) >= 0).all(), "16-bit ramp must stay monotonic, not wrap or clip"
    Image.new("RGB", (40, 30), (200, 100, 50)).save(tmp_path / "colour.jpg")
    colour = read_grayscale(tmp_path / "colour.jpg")
    assert colour.shape == (30, 40) and 110 < colour.mean() < 140


def test_full_and_lungs_views_share_their_splits(raw, workdir):
    """Both views of one raw dataset must test on the same images, or their comparison is meaningless."""
    _run(workdir, "full")
    _run(workdir, "lungs")
    full = pd.read_csv(manifest_file("full")).set_index("name")["split"]
    lungs = pd.read_csv(manifest_file("lungs")).set_index("name")["split"]
    assert full.sort_index().equals(lungs.sort_index())
