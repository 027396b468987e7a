import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cxr.io.images import difference_hash, hash_distance
from cxr.synthetic.generator import CLASSES, MAX_DUPLICATE_DISTANCE, Anatomy, render_case, write_dataset

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


def test_shortcut_probability_controls_markers(tmp_path):
    params = {**PARAMS, "duplicate_fraction": 0.0, "follow_up_fraction": 0.0}
    none = write_dataset(tmp_path / "none", seed=1, progress=False, **params)
    every = write_dataset(tmp_path / "every", seed=1, progress=False, **{**params, "shortcut": 1.0})
    assert none["shortcut_markers"] == 0
    assert every["shortcut_markers"] == sum(every["counts"].values()) == 18
    # The marker draw comes first in each scan's generator, so the files differ by the marker alone.
    corner = {"COVID-19": np.s_[:16, :16], "Pneumonia": np.s_[:16, -16:], "Normal": np.s_[-16:, :16]}
    for cls in CLASSES:
        for path in (tmp_path / "every" / cls / "images").iterdir():
            changed = _pixels(path) != _pixels(tmp_path / "none" / cls / "images" / path.name)
            mask = _pixels(tmp_path / "every" / cls / "masks" / path.name) > 0
            assert changed[corner[cls]].sum() > 10 and not (changed & mask).any()
            changed[corner[cls]] = False
            assert not changed.any()


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
