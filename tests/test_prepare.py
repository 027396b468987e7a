"""index and prepare: bad files are skipped and reported, groups never cross splits, splits are stratified,
both views share the split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from cxr.data import index
from cxr.data.params import SplitParams
from cxr.data.views import lung_box, make_view
from cxr.io.arrays import SplitArrays, split_dir
from cxr.io.images import read_grayscale
from cxr.io.view_spec import view_file
from cxr.params import SPLITS
from tests.conftest import index_source, prepare_view, run_stage, tiny_params, train_arguments, write_params


# Where the stages write in the working directory: the paths dvc.yaml passes them (tests.conftest).
def index_file(source: str) -> Path:
    return index.index_file(Path("data/index") / source)


def source_report_file(source: str) -> Path:
    return Path("reports/data/sources") / f"{source}.json"


def view_report_file(dataset: str) -> Path:
    return Path("reports/data/views") / f"{dataset}.json"


def prepared(dataset: str) -> Path:
    return Path("data/prepared") / dataset


@pytest.fixture
def raw(tiny_raw: Path, workdir: Path) -> Path:
    """A private copy of the tiny raw dataset inside the working directory, ready to be damaged."""
    copy = workdir / "data" / "raw" / "synthetic"
    shutil.copytree(tiny_raw, copy)
    return copy


def _index(workdir: Path, **overrides) -> dict:
    """Indexes the synthetic source; returns its data report."""
    write_params(workdir, tiny_params(**overrides))
    index_source(workdir, "synthetic")
    return json.loads(source_report_file("synthetic").read_text())


def _view(workdir: Path, dataset: str, **overrides) -> dict:
    """Indexes the synthetic source and builds one view of it; returns the view report."""
    _index(workdir, **overrides)
    prepare_view(workdir, dataset)
    return json.loads(view_report_file(dataset).read_text())


def _rows() -> pd.DataFrame:
    return pd.read_csv(index_file("synthetic"), keep_default_na=False).set_index("name")


def _names(dataset: str) -> dict[str, str]:
    """image name -> split, from the view's split arrays."""
    return {str(name): split for split in SPLITS for name in SplitArrays.load(split_dir(prepared(dataset), split)).names}


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
    report = _index(workdir)
    reasons = {entry["file"]: entry["reason"] for entry in report["skipped"]}
    assert reasons == {
        "COVID-19/images/empty.png": "unreadable image",
        "COVID-19/images/corrupt.png": "unreadable image",
        "COVID-19/images/notes.txt": "not an image file",
        "COVID-19/images/black.png": "constant image",
    }
    rows = _rows()
    # Images whose mask is missing or unusable are kept in the index with the mask's status ...
    assert rows.loc["COVID-19/images/no_mask.png", "mask_status"] == "missing"
    assert rows.loc["COVID-19/images/wrong_mask.png", "mask_status"].startswith("shape differs: mask 50x70, image 96x96")
    assert rows.loc["COVID-19/images/corrupt_mask.png", "mask_status"].startswith("unreadable")
    # ... so the full view keeps them and the lungs view skips them, each counting what it did.
    prepare_view(workdir, "lungs")
    lungs = json.loads(view_report_file("lungs").read_text())
    assert {entry["file"] for entry in lungs["skipped"]} == {
        "COVID-19/images/no_mask.png", "COVID-19/images/wrong_mask.png", "COVID-19/images/corrupt_mask.png"}
    assert lungs["skipped_by_reason"] == {"missing": 1, "shape differs": 1, "unreadable": 1}
    assert not set(reasons) & set(_names("lungs"))
    assert lungs["images_kept"] == len(_names("lungs")) == report["images_kept"] - 3
    prepare_view(workdir, "full")
    full = json.loads(view_report_file("full").read_text())
    assert full["images_skipped"] == 0 and full["images_without_mask"] == 3
    assert {"COVID-19/images/no_mask.png", "COVID-19/images/wrong_mask.png"} <= set(_names("full"))


def test_masks_of_another_size_are_resized_to_their_image(raw, workdir):
    """The Kaggle Radiography Database ships 256-px masks for its 299-px images."""
    _film(299, 299).save(raw / "Normal" / "images" / "kaggle.png")
    small = np.zeros((256, 256), dtype=np.uint8)
    small[40:200, 30:110] = 255
    small[40:200, 146:226] = 255
    Image.fromarray(small).save(raw / "Normal" / "masks" / "kaggle.png")
    report = _index(workdir)
    assert _rows().loc["Normal/images/kaggle.png", "mask_status"] == "resized"
    assert report["lung_masks"]["Normal"]["resized"] == 1
    for view in ("full", "lungs"):
        prepare_view(workdir, view)
        assert json.loads(view_report_file(view).read_text())["masks_resized"] == 1
        names = _names(view)
        arrays = SplitArrays.load(split_dir(prepared(view), names["Normal/images/kaggle.png"]))
        mask = arrays.masks[list(arrays.names).index("Normal/images/kaggle.png")]
        # Two lungs, 160/256 of the height each, survive the resize to 299 px and the view's resampling.
        assert 0.15 < mask.mean() < 0.7


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
    report = _index(workdir)
    skipped = {entry["file"]: entry for entry in report["skipped"]}
    assert skipped["COVID-19/images/bomb.png"]["reason"] == "too large"
    detail = skipped["COVID-19/images/bomb.png"]["detail"]
    assert "too large: 20000x20000 px" in detail and "index.max_image_pixels" in detail
    # Under a limit that admits its size, the file is decoded and its missing pixel data found.
    report = _index(workdir, **{"index.max_image_pixels": 10**9})
    assert {entry["file"]: entry["reason"] for entry in report["skipped"]} == {"COVID-19/images/bomb.png": "unreadable image"}


def test_groups_stay_in_one_split_and_classes_are_stratified(raw, workdir):
    report = _index(workdir)
    rows = _rows().reset_index()
    assert rows.groupby("group")["split"].nunique().max() == 1
    with_patient = rows[rows["patient_id"] != ""]
    assert len(with_patient) == len(rows) - sum(rows["name"].str.contains("/x"))
    assert with_patient.groupby("patient_id")["split"].nunique().max() == 1
    # Every planted near-duplicate (x*.png) is found and lands with its source.
    planted = rows[rows["name"].str.contains("/x")]
    assert len(planted) > 0
    for group in report["duplicate_groups"]:
        assert len({rows.set_index("name").loc[name, "split"] for name in group}) == 1
    duplicated = {name for group in report["duplicate_groups"] for name in group}
    assert set(planted["name"]) <= duplicated
    for split in SPLITS:
        counts = report["counts"][split]
        assert all(count > 0 for count in counts.values()), f"{split} misses a class: {counts}"


def test_split_arrays_are_aligned_and_lungs_view_is_black_outside_the_mask(raw, workdir):
    _view(workdir, "lungs")
    total = 0
    for split in SPLITS:
        arrays = SplitArrays.load(split_dir(prepared("lungs"), split))
        assert isinstance(arrays.images, np.memmap), "splits are memory-mapped, not read into memory"
        assert arrays.images.dtype == np.uint8 and arrays.images.shape[1:] == (48, 48)
        assert arrays.masks.shape == arrays.images.shape and arrays.masks.dtype == bool
        assert len(arrays.labels) == len(arrays.names) == len(arrays.images)
        assert (arrays.images[~np.asarray(arrays.masks)] == 0).all()
        assert arrays.masks.any(axis=(1, 2)).all()
        rows = _rows()
        assert all(rows.loc[str(name), "split"] == split for name in arrays.names)
        assert [classes_index(rows.loc[str(name), "label"]) for name in arrays.names] == arrays.labels.tolist()
        total += len(arrays)
    assert total == (_rows()["status"] == "ok").sum()
    assert json.loads(view_file(prepared("lungs")).read_text()) == {"view": "lungs", "image_size": 48, "lung_margin": 0.05}


def classes_index(label: str) -> int:
    return tiny_params()["classes"].index(label)


def test_same_image_in_two_classes_is_dropped(raw, workdir):
    source = sorted((raw / "Normal" / "images").glob("p*.png"))[0]
    shutil.copy(source, raw / "Pneumonia" / "images" / "copy.png")
    shutil.copy(raw / "Normal" / "masks" / source.name, raw / "Pneumonia" / "masks" / "copy.png")
    report = _index(workdir)
    dropped = {entry["file"] for entry in report["skipped"] if entry["reason"] == "same image in several classes"}
    assert dropped == {"Pneumonia/images/copy.png", f"Normal/images/{source.name}"}


def test_class_without_usable_images_stops_the_index_with_class_and_folder(raw, workdir):
    """A class folder whose files are all unusable is a broken download, not a smaller dataset: the index stage
    stops and writes nothing, before any view or training is built on what is left."""
    for path in (raw / "Pneumonia" / "images").iterdir():
        path.write_bytes(b"")
    with pytest.raises(SystemExit, match=r"source\.synthetic: class Pneumonia: no usable image in Pneumonia \(unreadable image \d+\)"):
        _index(workdir)
    assert not source_report_file("synthetic").exists() and not index_file("synthetic").exists()


def test_missing_or_foreign_raw_source_stops_with_the_path_named(raw, workdir):
    shutil.rmtree(raw)
    with pytest.raises(SystemExit, match=r"source.synthetic.path: data/raw/synthetic does not exist"):
        _index(workdir)
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("not a zip")
    with pytest.raises(SystemExit, match=r"is a file but not a zip archive"):
        _index(workdir)


def test_a_view_refuses_raw_files_changed_since_indexing(raw, workdir):
    """The view stage has only the index as its data dependency: the index's file hashes keep that honest."""
    _index(workdir)
    victim = sorted((raw / "Normal" / "images").glob("p*.png"))[0]
    _film(96, 96).save(victim)
    with pytest.raises(SystemExit, match=rf"Normal/images/{victim.name} changed since the source was indexed"):
        prepare_view(workdir, "full")


def test_a_view_of_a_source_not_indexed_names_the_index_and_its_stage(raw, workdir):
    write_params(workdir, tiny_params())
    with pytest.raises(SystemExit, match=r"data/index/synthetic/index\.csv not found: run `dvc repro index@synthetic` first"):
        prepare_view(workdir, "full")
    assert not prepared("full").exists()


def test_assign_splits_keeps_groups_whole_and_fractions_close():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, size=600)
    groups = np.repeat(np.arange(600), sizes)
    labels = np.repeat(rng.integers(0, 3, size=600), sizes)
    splits = index.assign_splits(groups, labels, SplitParams(train=0.7, val=0.15, test=0.15), seed=1)
    assert all(len(set(splits[groups == g])) == 1 for g in range(600))
    for label in range(3):
        share = np.bincount(splits[labels == label], minlength=3) / (labels == label).sum()
        assert share == pytest.approx([0.7, 0.15, 0.15], abs=0.02)
    assert np.array_equal(splits, index.assign_splits(groups, labels, SplitParams(train=0.7, val=0.15, test=0.15), seed=1))


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


def test_index_and_view_bytes_depend_only_on_the_data(raw, workdir, monkeypatch):
    """Same input, same bytes, however many processes decode: otherwise DVC would retrain every model."""

    def outputs() -> dict[str, bytes]:
        files = [index_file("synthetic"), *sorted(Path("data/prepared/full").rglob("*.npy"))]
        return {str(path): path.read_bytes() for path in files}

    _view(workdir, "full")
    first = outputs()
    monkeypatch.setattr(index, "PARALLEL_FROM", 0)
    _view(workdir, "full", workers=2)
    assert outputs() == first


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
    (raw / "Normal" / "masks" / sorted((raw / "Normal" / "masks").iterdir())[0].name).unlink()
    _view(workdir, "full")
    prepare_view(workdir, "lungs")
    full, lungs = _names("full"), _names("lungs")
    assert len(lungs) == len(full) - 1, "the lungs view skips the image without a mask, and only it"
    assert all(full[name] == split for name, split in lungs.items())


def test_a_zip_indexes_as_its_folder_does_serially_and_in_parallel(raw, workdir, monkeypatch):
    """Switching a source from its folder to its zip changes nothing downstream; and forked decoding
    workers must not share the parent's archive handle (its file offset is shared)."""
    import zipfile

    _index(workdir)
    from_folder = index_file("synthetic").read_bytes()
    archive = workdir / "data" / "raw" / "synthetic.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(raw.rglob("*.png")):
            handle.write(path, f"synthetic/{path.relative_to(raw).as_posix()}")
    shutil.rmtree(raw)
    _index(workdir, **{"source.synthetic.path": "data/raw/synthetic.zip"})
    serial = index_file("synthetic").read_bytes()
    assert serial == from_folder
    monkeypatch.setattr(index, "PARALLEL_FROM", 0)
    report = _index(workdir, **{"source.synthetic.path": "data/raw/synthetic.zip", "workers": 2})
    assert index_file("synthetic").read_bytes() == serial
    assert report["kind"] == "zip" and report["images_skipped"] == 0 and report["root"] == "synthetic/"
    prepare_view(workdir, "lungs")
    assert len(_names("lungs")) == report["images_kept"]


def test_a_test_only_dataset_holds_every_usable_image_in_its_test_split(raw, workdir):
    """An external test set (Kermany for models trained elsewhere) is tested whole, never trained on."""
    report = _view(workdir, "full", **{"dataset.full": {"source": "synthetic", "view": "full", "test_only": True}})
    usable = (_rows()["status"] == "ok").sum()
    assert report["test_only"] and sum(report["counts"]["test"].values()) == usable
    assert len(SplitArrays.load(split_dir(prepared("full"), "train"))) == len(SplitArrays.load(split_dir(prepared("full"), "val"))) == 0
    assert len(_names("full")) == usable
    with pytest.raises(SystemExit, match=r"training split has no images of .*test_only dataset is an external test set"):
        run_stage("train", *train_arguments(workdir, "resnet18", "full"))


def test_lungs_view_of_an_empty_mask_is_black():
    """A segmenter that finds no lungs leaves nothing of the film to classify: a black view, not a crash."""
    film = np.full((80, 60), 200, dtype=np.uint8)
    image, mask = make_view(film, np.zeros(film.shape, dtype=bool), "lungs", 32, margin=0.05)
    assert image.shape == mask.shape == (32, 32)
    assert not image.any() and not mask.any()


def test_outside_view_is_the_full_view_with_the_lungs_blacked_out():
    image = np.full((100, 120), 200, dtype=np.uint8)
    image[:, :10] = 90
    mask = np.zeros((100, 120), dtype=bool)
    mask[20:60, 30:50] = True
    mask[25:70, 70:95] = True
    image[mask] = 60
    full, full_mask = make_view(image, mask, "full", 64, margin=0.1)
    outside, outside_mask = make_view(image, mask, "outside", 64, margin=0.1)
    assert (outside_mask == full_mask).all(), "the mask still marks where the lungs were (for the explanations)"
    assert (outside[outside_mask] == 0).all() and (full[full_mask] > 0).all()
    # Away from the lung border, everything else is the full view's pixels.
    far = ~binary_dilation(full_mask, iterations=2)
    assert np.array_equal(outside[far], full[far])
    assert not (outside[outside_mask | ~far] == 60).any(), "no lung pixel blends in at the border"


def test_outside_view_skips_images_without_a_lung_mask(raw, workdir):
    (raw / "Normal" / "masks" / sorted((raw / "Normal" / "masks").iterdir())[0].name).unlink()
    params = tiny_params()
    params["dataset"]["outside"] = {"source": "synthetic", "view": "outside"}
    write_params(workdir, params)
    index_source(workdir, "synthetic")
    prepare_view(workdir, "full")
    prepare_view(workdir, "outside")
    full, outside = _names("full"), _names("outside")
    assert len(outside) == len(full) - 1 and all(full[name] == split for name, split in outside.items())
    report = json.loads(view_report_file("outside").read_text())
    assert report["view"] == "outside" and report["skipped_by_reason"] == {"missing": 1}
    arrays = SplitArrays.load(split_dir(prepared("outside"), "test"))
    assert (np.asarray(arrays.images)[np.asarray(arrays.masks)] == 0).all()
