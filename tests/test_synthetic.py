import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from scipy import ndimage

from cxr.data.index import build_index, write_index
from cxr.data.params import DatasetParams, IndexParams, PrepareParams, SourceParams
from cxr.data.prepare import prepare_view
from cxr.io.arrays import SplitArrays, split_dir
from cxr.io.pixels import difference_hash, hash_distance
from cxr.params import SPLITS
from cxr.synthetic.generator import CLASSES, MAX_DUPLICATE_DISTANCE, Anatomy, render_case, write_dataset
from cxr.synthetic.params import GenerateParams
from tests.conftest import tiny_params

PARAMS = dict(images_per_class=6, image_size=64, shortcut=0.0, follow_up_fraction=0.5, duplicate_fraction=0.5)


def _files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.asarray(image)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic") / "raw"
    return out, write_dataset(out, seed=3, progress=False, **PARAMS)


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path, dataset):
    out, _ = dataset
    again = write_dataset(tmp_path / "again", seed=3, progress=False, **PARAMS)
    assert _files(tmp_path / "again") == _files(out)
    assert again == dataset[1]
    write_dataset(tmp_path / "other", seed=4, progress=False, **PARAMS)
    first, other = _files(out), _files(tmp_path / "other")
    assert len(first) == len(other)
    images = [{data for name, data in files.items() if "/images/" in name} for files in (first, other)]
    assert not images[0] & images[1]


def test_layout_names_and_masks(dataset):
    out, summary = dataset
    assert sorted(p.name for p in out.iterdir()) == sorted(CLASSES)
    patient_class: dict[str, str] = {}
    for cls in CLASSES:
        images = sorted(p.name for p in (out / cls / "images").iterdir())
        assert images == sorted(p.name for p in (out / cls / "masks").iterdir())
        assert len(images) == summary["counts"][cls]
        for name in images:
            assert re.fullmatch(r"p\d{5}_s[12]\.png|x\d{5}\.png", name)
            image, mask = _pixels(out / cls / "images" / name), _pixels(out / cls / "masks" / name)
            assert image.shape == mask.shape
            if name.startswith("p"):  # a planted duplicate may be stored at another size
                assert image.shape == (PARAMS["image_size"],) * 2
            assert set(np.unique(mask)) <= {0, 255}
            if match := re.match(r"^(p\d+)_", name):
                assert patient_class.setdefault(match.group(1), cls) == cls, "a patient spans two classes"
    assert len(patient_class) == summary["patients"]


def test_follow_ups_and_near_duplicates(dataset):
    out, summary = dataset
    names = {cls: sorted(p.name for p in (out / cls / "images").iterdir()) for cls in CLASSES}
    follow_ups = [(cls, n) for cls in CLASSES for n in names[cls] if n.endswith("_s2.png")]
    duplicates = [(cls, n) for cls in CLASSES for n in names[cls] if n.startswith("x")]
    assert len(follow_ups) == summary["follow_ups"] == 3 * (6 - round(6 / 1.5))
    assert len(duplicates) == summary["duplicates"] == 3 * 3
    for cls, name in follow_ups:
        assert name.replace("_s2", "_s1") in names[cls]
    for cls, name in duplicates:
        copy = difference_hash(_pixels(out / cls / "images" / name))
        sources = [n for n in names[cls] if n.startswith("p")]
        distances = [hash_distance(copy, difference_hash(_pixels(out / cls / "images" / n))) for n in sources]
        assert min(distances) <= MAX_DUPLICATE_DISTANCE
        source = sources[int(np.argmin(distances))]
        # The copy's mask follows its image, so it overlaps the source's mask almost entirely.
        source_mask = _pixels(out / cls / "masks" / source) > 0
        with Image.open(out / cls / "masks" / name) as stored:
            copy_mask = np.asarray(stored.resize(source_mask.shape[::-1], Image.Resampling.NEAREST)) > 0
        assert (copy_mask & source_mask).sum() / (copy_mask | source_mask).sum() > 0.85


@pytest.mark.parametrize("size", [64, 256])
def test_masks_are_two_plausible_lungs(size):
    for i in range(12):
        image, mask = render_case(np.random.default_rng([size, i]), CLASSES[i % 3], size)
        assert image.dtype == np.uint8 and image.shape == mask.shape == (size, size) and mask.dtype == bool
        labels, count = ndimage.label(mask)
        assert count == 2
        assert 0.12 < mask.mean() < 0.6
        centres = ndimage.center_of_mass(mask, labels, [1, 2])
        left, right = (1, 2) if centres[0][1] < centres[1][1] else (2, 1)
        assert centres[left - 1][1] < size / 2 < centres[right - 1][1]
        # The heart takes room from the patient's left lung, on the image's right side.
        assert (labels == right).sum() < (labels == left).sum()
        # Dark lungs inside brighter tissue; a film filled by the body or shuttered white has no dark corner to test.
        around = ndimage.binary_dilation(mask, iterations=max(2, size // 16)) & ~mask
        assert image[mask].mean() < image[around].mean()


def test_distinct_patients_are_far_apart_in_the_duplicate_hash():
    # The prepare stage can only tell planted duplicates from other patients if a threshold fits in between.
    hashes = [difference_hash(render_case(np.random.default_rng([7, i]), CLASSES[i % 3], 256)[0]) for i in range(10)]
    distances = [hash_distance(hashes[i], hashes[j]) for i in range(10) for j in range(i + 1, 10)]
    assert min(distances) > 2 * MAX_DUPLICATE_DISTANCE


def test_class_signal_lives_only_inside_the_lungs():
    anatomy = Anatomy.sample(np.random.default_rng(0))
    inside_means = {}
    for seed in range(3):
        films = {label: render_case(np.random.default_rng(seed), label, 128, anatomy=anatomy, severity=1.0)
                 for label in CLASSES}
        mask = films["Normal"][1]
        normal = films["Normal"][0].astype(int)
        for label, (image, label_mask) in films.items():
            assert np.array_equal(label_mask, mask)
            assert np.array_equal(image[~mask], films["Normal"][0][~mask])
            inside_means.setdefault(label, []).append(image[mask].mean())
            assert (image.astype(int) - normal)[mask].min() >= 0
    normal_mean = np.mean(inside_means["Normal"])
    assert np.mean(inside_means["COVID-19"]) > normal_mean + 5
    assert np.mean(inside_means["Pneumonia"]) > normal_mean + 5


def test_severity_scales_the_disease():
    anatomy = Anatomy.sample(np.random.default_rng(1))
    for label in ("COVID-19", "Pneumonia"):
        means = [render_case(np.random.default_rng(5), label, 128, anatomy=anatomy, severity=s)[0].astype(float).mean()
                 for s in (0.0, 0.5, 1.0)]
        assert means[0] < means[1] < means[2]


@pytest.mark.parametrize("label, rows, cols", [("COVID-19", "top", "left"), ("Pneumonia", "top", "right"),
                                               ("Normal", "bottom", "left")])
def test_shortcut_marker_is_outside_the_lungs_in_a_class_corner(label, rows, cols):
    size = 128
    for seed in range(4):
        plain, mask = render_case(np.random.default_rng(seed), label, size)
        marked, marked_mask = render_case(np.random.default_rng(seed), label, size, shortcut=True)
        assert np.array_equal(mask, marked_mask)
        changed = plain != marked
        assert changed.sum() > 0.002 * size * size
        assert not (changed & mask).any()
        ys, xs = np.nonzero(changed)
        assert (ys < size / 4).all() if rows == "top" else (ys > 3 * size / 4).all()
        assert (xs < size / 4).all() if cols == "left" else (xs > 3 * size / 4).all()


TWIN_PARAMS = dict(images_per_class=10, image_size=96, follow_up_fraction=0.25, duplicate_fraction=0.2)
# The quarter of the film (rows, columns) that holds each class's marker; planted copies may be resized.
MARKER_CORNERS = {"COVID-19": ("top", "left"), "Pneumonia": ("top", "right"), "Normal": ("bottom", "left")}


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[float, tuple[Path, Path, dict]]:
    """shortcut -> (clean set, its twin, summary), both written by one call."""
    written = {}
    for shortcut in (1.0, 0.5):
        root = tmp_path_factory.mktemp(f"twins{shortcut}")
        summary = write_dataset(root / "clean", seed=5, shortcut=shortcut, shortcut_dir=root / "twin", progress=False,
                                **TWIN_PARAMS)
        written[shortcut] = root / "clean", root / "twin", summary
    return written


def _changed_pixels(clean: Path, twin: Path) -> dict[str, np.ndarray]:
    """class/images/name -> where the twin's film differs from the clean one."""
    return {path.relative_to(clean).as_posix(): _pixels(twin / path.relative_to(clean)) != _pixels(path)
            for path in sorted(clean.glob("*/images/*.png"))}


@pytest.mark.parametrize("shortcut", [1.0, 0.5])
def test_twin_has_the_clean_names_and_masks(twins, shortcut):
    clean, twin, summary = twins[shortcut]
    clean_files, twin_files = _files(clean), _files(twin)
    assert sorted(clean_files) == sorted(twin_files)
    assert len(clean_files) == 2 * sum(summary["counts"].values())
    masks = [name for name in clean_files if "/masks/" in name]
    assert masks and all(clean_files[name] == twin_files[name] for name in masks)
    assert sorted(p.name for p in clean.parent.iterdir()) == ["clean", "twin"]  # no temporaries left


@pytest.mark.parametrize("shortcut", [1.0, 0.5])
def test_twin_differs_from_the_clean_set_only_at_the_class_marker(twins, shortcut):
    clean, twin, summary = twins[shortcut]
    changed = _changed_pixels(clean, twin)
    for name, differs in changed.items():
        cls = name.split("/")[0]
        lungs = _pixels(twin / name.replace("/images/", "/masks/")) > 0
        assert not (differs & lungs).any(), name
        rows, cols = np.nonzero(differs)
        height, width = differs.shape
        assert (rows < height / 4).all() if MARKER_CORNERS[cls][0] == "top" else (rows >= 3 * height / 4).all()
        assert (cols < width / 4).all() if MARKER_CORNERS[cls][1] == "left" else (cols >= 3 * width / 4).all()
    marked = sum(differs.any() for differs in changed.values())
    assert marked == summary["shortcut_markers"]
    if shortcut == 1.0:
        assert marked == len(changed) == sum(summary["counts"].values())
        assert all(differs.sum() > 10 for differs in changed.values())
    else:
        assert 0 < marked < len(changed)


def test_clean_set_is_the_same_whatever_the_shortcut_and_the_twin(tmp_path, twins):
    for shortcut in (0.0, 0.9):
        summary = write_dataset(tmp_path / str(shortcut), seed=5, shortcut=shortcut, progress=False, **TWIN_PARAMS)
        assert summary["shortcut_markers"] == 0
    assert _files(tmp_path / "0.0") == _files(tmp_path / "0.9") == _files(twins[1.0][0]) == _files(twins[0.5][0])


def test_the_twin_cannot_overwrite_the_clean_set(workdir):
    for twin in (Path("raw"), workdir / "raw", Path("raw/twin"), Path(".")):
        with pytest.raises(ValueError, match="shortcut_dir .* must differ from out_dir"):
            write_dataset(Path("raw"), seed=0, shortcut_dir=twin, progress=False, **PARAMS)
    assert not any(workdir.iterdir())
    generate = tiny_params()["generate"]["synthetic"]
    with pytest.raises(ValidationError, match="shortcut_dir .* must differ from out_dir"):
        GenerateParams(**{**generate, "shortcut_dir": generate["out_dir"]})


def test_lungs_view_of_the_twin_is_the_clean_lungs_view(workdir):
    """The markers lie outside the lungs, and the lungs view keeps the lungs only."""
    params = tiny_params()
    generate = params["generate"]["synthetic"]
    # Planted copies too (the tiny params have none), and every film marked.
    write_dataset(Path(generate["out_dir"]), seed=generate["seed"], images_per_class=generate["images_per_class"],
                  image_size=generate["image_size"], shortcut=1.0, shortcut_dir=Path(generate["shortcut_dir"]),
                  follow_up_fraction=0.25, duplicate_fraction=0.2, progress=False)
    index_params, prepare_params = IndexParams(**params["index"]), PrepareParams(**params["prepare"])
    for source in ("synthetic", "synthetic_shortcut"):
        index = workdir / "data" / "index" / source
        write_index(index, workdir / f"{source}.json",
                    build_index(source, SourceParams(**params["source"][source]), index_params, params["classes"]))
        prepare_view(f"{source}_lungs", DatasetParams(source=source, view="lungs"), prepare_params, params["classes"],
                     index, workdir / "data" / "prepared" / f"{source}_lungs", workdir / f"{source}_lungs.json")
    # The same split (the index keys groups by name), so the lungs view is the same data, file for file:
    # models trained on either are the same models.
    clean_view, marked_view = (workdir / "data" / "prepared" / f"{source}_lungs" for source in ("synthetic", "synthetic_shortcut"))
    total = 0
    for split in SPLITS:
        for array in ("images", "masks", "labels", "names"):
            clean = (split_dir(clean_view, split) / f"{array}.npy").read_bytes()
            assert (split_dir(marked_view, split) / f"{array}.npy").read_bytes() == clean, (split, array)
        total += len(SplitArrays.load(split_dir(clean_view, split)))
    assert total == len(list(Path(generate["out_dir"]).glob("*/images/*")))


def test_rewrite_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "raw"
    (out / "stale").mkdir(parents=True)
    (out / "stale" / "old.png").write_bytes(b"old")
    write_dataset(out, seed=0, progress=False, **{**PARAMS, "images_per_class": 1})
    assert sorted(p.name for p in out.iterdir()) == sorted(CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_invalid_arguments():
    with pytest.raises(ValueError):
        render_case(np.random.default_rng(0), "Tuberculosis", 64)
    with pytest.raises(ValueError):
        write_dataset(Path("unused"), seed=0, progress=False, **{**PARAMS, "duplicate_fraction": 1.5})
