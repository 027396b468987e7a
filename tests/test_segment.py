"""The lung segmenter's pure parts on hand-made masks: masks to YOLO-seg polygons and back, Dice / IoU, the
anatomical mask checks, zone recall, mask AP through Ultralytics' matcher, the dataset export, and the
evaluation and interpretation helpers. Every expected value is worked out from the drawn shapes."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from cxr.io.arrays import SplitArrays
from cxr.segment.evaluate import diagnosis_probabilities, image_record, read_records, worst_first, write_records
from cxr.segment.export import DATA_YAML, EXPORT_REPORT, export_dataset, file_stem
from cxr.segment.interpret import BORDER_PIXELS, border_share, uncertainty_map
from cxr.segment.labels import label_lines, lung_components, mask_to_polygons, polygons_to_mask, read_label_lines
from cxr.segment.predict import LungInstances
from cxr.segment.scores import (
    dice,
    implausible_reasons,
    instance_matches,
    iou,
    mask_average_precision,
    mask_checks,
    zone_recall,
)

CLASSES = ["COVID-19", "Pneumonia", "Normal"]


# ---------------------------------------------------------------------------------------------------------
# Drawing helpers


def ellipse(shape: tuple[int, int], centre: tuple[int, int], axes: tuple[int, int], value: int = 1) -> np.ndarray:
    """A filled ellipse (uint8, `value` inside) drawn by OpenCV; centre and axes as (x, y)."""
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(canvas, centre, axes, 0, 0, 360, value, thickness=-1)
    return canvas


def two_lungs(shape: tuple[int, int] = (128, 128), shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image-left lung, image-right lung) as bool masks: two upright ellipses side by side, the left larger."""
    height, width = shape
    left = ellipse(shape, (width * 5 // 16 + shift, height // 2), (width * 5 // 32, height * 9 // 32)) > 0
    right = ellipse(shape, (width * 11 // 16 + shift, height // 2), (width * 4 // 32, height * 8 // 32)) > 0
    return left, right


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    first, second = np.asarray(first) > 0, np.asarray(second) > 0
    return (first & second).sum() / (first | second).sum()


def box(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    region = np.zeros(shape, dtype=bool)
    region[rows[0]:rows[1], cols[0]:cols[1]] = True
    return region


def instances(probabilities: np.ndarray, confidences, classes) -> LungInstances:
    probabilities = np.asarray(probabilities, dtype=np.float32)
    return LungInstances(np.zeros((len(probabilities), 4), dtype=np.float32), np.asarray(confidences, dtype=np.float32),
                         np.asarray(classes, dtype=np.int64), probabilities)


# ---------------------------------------------------------------------------------------------------------
# Masks -> polygons -> masks


def test_rectangle_polygon_runs_a_quarter_pixel_inside_the_outer_pixel_edges():
    mask = box((12, 10), (3, 8), (2, 6))  # rows 3..7, columns 2..5
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 1
    corners = {tuple(point) for point in polygons[0].tolist()}
    assert corners == {(2.25, 3.25), (5.75, 3.25), (5.75, 7.75), (2.25, 7.75)}
    assert np.array_equal(polygons_to_mask(polygons, mask.shape), mask)


def test_polygons_to_mask_of_hand_made_polygons():
    # Sides a quarter pixel inside columns 2..5 / rows 3..7 and 6..8 (pixel-edge coordinates, as mask_to_polygons
    # writes them): exactly those pixels, each polygon at its own place, their union when drawn together.
    first = np.array([[2.25, 3.25], [5.75, 3.25], [5.75, 7.75], [2.25, 7.75]])
    second = np.array([[6.25, 0.25], [8.75, 0.25], [8.75, 1.75], [6.25, 1.75]])
    assert np.array_equal(polygons_to_mask([first], (10, 9)), box((10, 9), (3, 8), (2, 6)))
    assert np.array_equal(polygons_to_mask([first, second], (10, 9)), box((10, 9), (3, 8), (2, 6)) | box((10, 9), (0, 2), (6, 9)))
    assert not polygons_to_mask([], (10, 9)).any()


def test_single_ellipse_round_trip():
    mask = ellipse((96, 128), (60, 50), (30, 20)) > 0  # wider than high: a swapped x / y would show
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 1 and polygons[0].shape[1] == 2 and len(polygons[0]) >= 3
    assert polygons[0][:, 0].max() <= 128 and polygons[0][:, 1].max() <= 96
    assert overlap(polygons_to_mask(polygons, mask.shape), mask) >= 0.95


@pytest.mark.parametrize("encoding", ["0/255", "0/1", "bool"])
def test_mask_encodings_read_alike(encoding):
    left, right = two_lungs()
    truth = left | right
    mask = {"0/255": truth.astype(np.uint8) * 255, "0/1": truth.astype(np.uint8), "bool": truth}[encoding]
    polygons = mask_to_polygons(mask)
    reference = mask_to_polygons(truth)
    assert len(polygons) == 2
    assert all(np.array_equal(a, b) for a, b in zip(polygons, reference))
    assert overlap(polygons_to_mask(polygons, truth.shape), truth) >= 0.95


def test_two_lungs_give_two_polygons_largest_first():
    small = ellipse((128, 128), (36, 64), (14, 30)) > 0
    large = ellipse((128, 128), (90, 64), (22, 40)) > 0  # the larger lung on the image's right
    assert large.sum() > small.sum()
    polygons = mask_to_polygons(small | large)
    assert len(polygons) == 2
    first, second = (polygons_to_mask([polygon], small.shape) for polygon in polygons)
    assert overlap(first, large) >= 0.95 and overlap(second, small) >= 0.95
    assert overlap(polygons_to_mask(polygons, small.shape), small | large) >= 0.95


def test_hole_is_filled():
    outer = ellipse((128, 128), (64, 64), (30, 45)) > 0
    hole = ellipse((128, 128), (64, 64), (10, 12)) > 0
    polygons = mask_to_polygons(outer & ~hole)
    assert len(polygons) == 1
    result = polygons_to_mask(polygons, outer.shape)
    assert overlap(result, outer) >= 0.95
    assert result[hole].all()  # the hole's pixels are lung again
    components = lung_components((outer & ~hole).astype(np.uint8) * 255)
    assert len(components) == 1 and np.array_equal(components[0], outer)  # the lung itself is filled too


def test_speck_is_dropped():
    left, right = two_lungs()
    speck = box(left.shape, (5, 7), (62, 64))  # 4 pixels far from both lungs
    assert not (speck & (left | right)).any()
    polygons = mask_to_polygons(left | right | speck)
    assert len(polygons) == 2
    result = polygons_to_mask(polygons, left.shape)
    assert not result[speck].any()
    assert overlap(result, left | right) >= 0.95


def test_empty_mask_has_no_polygons():
    assert mask_to_polygons(np.zeros((32, 32), dtype=bool)) == []
    assert mask_to_polygons(np.zeros((32, 32), dtype=np.uint8)) == []
    assert lung_components(np.zeros((32, 32), dtype=bool)) == []


def test_label_lines_of_a_hand_made_polygon():
    shape = (96, 128)  # height, width
    frame = np.array([[0.0, 0.0], [128.0, 0.0], [128.0, 96.0], [0.0, 96.0]])
    inner = np.array([[32.0, 24.0], [64.0, 24.0], [64.0, 72.0]])
    lines = label_lines([frame, inner], shape, 1)
    assert lines == ["1 0.000000 0.000000 1.000000 0.000000 1.000000 1.000000 0.000000 1.000000",
                     "1 0.250000 0.250000 0.500000 0.250000 0.500000 0.750000"]
    beyond = np.array([[-3.0, -1.0], [140.0, 50.0], [10.0, 100.0]])  # clipped to the image
    assert label_lines([beyond], shape, 0) == ["0 0.000000 0.000000 1.000000 0.520833 0.078125 1.000000"]


def test_label_lines_round_trip():
    shape = (96, 128)
    left, right = two_lungs(shape)
    polygons = mask_to_polygons(left | right)
    lines = label_lines(polygons, shape, 2)
    assert len(lines) == 2
    for line in lines:
        values = line.split()
        assert values[0] == "2"
        coordinates = np.array(values[1:], dtype=float)
        assert len(coordinates) % 2 == 0 and len(coordinates) >= 6
        assert ((coordinates >= 0) & (coordinates <= 1)).all()
    objects = read_label_lines(lines + [""], shape)  # blank lines are skipped
    assert [class_id for class_id, _ in objects] == [2, 2]
    for (_, points), polygon in zip(objects, polygons):
        assert points.shape == polygon.shape
        assert np.allclose(points, polygon, atol=1e-6 * 128)
    restored = polygons_to_mask([points for _, points in objects], shape)
    assert overlap(restored, left | right) >= 0.95


# ---------------------------------------------------------------------------------------------------------
# Dice and IoU


def test_dice_and_iou_of_two_overlapping_squares():
    first = box((10, 10), (2, 6), (2, 6))
    second = box((10, 10), (2, 6), (4, 8))  # overlap: 4 rows x 2 columns = 8 pixels
    assert (first & second).sum() == 8
    assert dice(first, second) == pytest.approx(2 * 8 / (16 + 16), abs=1e-12)
    assert dice(first, second) == 0.5
    assert iou(first, second) == pytest.approx(8 / 24, abs=1e-12)
    assert dice(second, first) == dice(first, second) and iou(second, first) == iou(first, second)


def test_dice_and_iou_edge_cases():
    empty = np.zeros((10, 10), dtype=bool)
    square = box((10, 10), (2, 6), (2, 6))
    other = box((10, 10), (6, 9), (6, 9))
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(square, empty) == 0.0 and dice(empty, square) == 0.0
    assert iou(square, empty) == 0.0 and iou(empty, square) == 0.0
    assert dice(square, square) == 1.0 and iou(square, square) == 1.0
    assert dice(square, other) == 0.0 and iou(square, other) == 0.0


# ---------------------------------------------------------------------------------------------------------
# Anatomical checks


def test_mask_checks_of_two_plausible_lungs():
    left, right = two_lungs()
    mask = left | right
    checks = mask_checks(mask, "full")
    assert checks["components"] == 2.0
    assert checks["empty"] == 0.0 and checks["more_than_two"] == 0.0 and checks["touches_border"] == 0.0
    assert checks["side_ratio"] == pytest.approx(left.sum() / right.sum(), rel=1e-12)
    assert checks["side_ratio"] > 1  # the left lung was drawn larger
    assert checks["area_fraction"] == pytest.approx((left.sum() + right.sum()) / 128 ** 2, rel=1e-12)
    rows, columns = np.nonzero(mask)
    assert checks["centre_x"] == pytest.approx(columns.mean() / 128) and checks["centre_y"] == pytest.approx(rows.mean() / 128)
    assert checks["plausible"] == 1.0


def test_mask_checks_one_pixel_on_the_border_makes_a_mask_implausible():
    left, right = two_lungs()
    mask = left | right
    mask[0, 64] = True  # a speck: not a lung, but on the border
    checks = mask_checks(mask, "full")
    assert checks["components"] == 2.0
    assert checks["touches_border"] == 1.0 and checks["plausible"] == 0.0


def test_mask_checks_of_lungs_running_off_the_image():
    shape = (128, 128)
    mask = (ellipse(shape, (40, 100), (18, 40)) | ellipse(shape, (88, 100), (18, 40))) > 0  # cut by the bottom edge
    assert mask[-1].any()
    checks = mask_checks(mask, "full")
    assert checks["touches_border"] == 1.0 and checks["plausible"] == 0.0


def test_mask_checks_of_an_empty_mask():
    checks = mask_checks(np.zeros((64, 64), dtype=bool), "full")
    assert checks["empty"] == 1.0 and checks["components"] == 0.0 and checks["plausible"] == 0.0
    assert checks["area_fraction"] == 0.0 and math.isnan(checks["side_ratio"])


def test_implausible_masks_are_told_why_in_words():
    left, right = two_lungs()
    assert implausible_reasons(mask_checks(left | right, "full"), "full") == []
    one_lung = mask_checks(left, "full")
    assert one_lung["plausible"] == 0.0
    assert implausible_reasons(one_lung, "full") == ["1 lung region instead of 2"]
    bordered = left | right
    bordered[0, 64] = True
    assert implausible_reasons(mask_checks(bordered, "full"), "full") == ["touches the image border"]
    assert implausible_reasons(mask_checks(np.zeros((64, 64), dtype=bool), "full"), "full") == ["no lungs found"]
    whole = mask_checks(np.pad(np.ones((100, 100), dtype=bool), 14), "full")
    assert any(reason.startswith("lungs cover 61% of the image") for reason in implausible_reasons(whole, "full"))


def test_mask_checks_of_three_blobs():
    shape = (128, 128)
    mask = (ellipse(shape, (30, 64), (14, 30)) | ellipse(shape, (64, 64), (10, 30)) | ellipse(shape, (98, 64), (14, 30))) > 0
    checks = mask_checks(mask, "full")
    assert checks["components"] == 3.0
    assert checks["more_than_two"] == 1.0 and checks["plausible"] == 0.0


def test_mask_checks_of_one_lung():
    left, _ = two_lungs()
    checks = mask_checks(left, "full")
    assert checks["components"] == 1.0 and math.isnan(checks["side_ratio"]) and checks["plausible"] == 0.0


# ---------------------------------------------------------------------------------------------------------
# Zone recall

# Two rectangle lungs 21 rows high (thirds of exactly 7 rows) in a 30 x 40 image.
ZONE_SHAPE = (30, 40)
LEFT_ROWS, LEFT_COLS = (3, 24), (4, 16)
RIGHT_ROWS, RIGHT_COLS = (6, 27), (22, 36)


def test_zone_recall_of_a_perfect_prediction():
    truth = box(ZONE_SHAPE, LEFT_ROWS, LEFT_COLS) | box(ZONE_SHAPE, RIGHT_ROWS, RIGHT_COLS)
    recall = zone_recall(truth.copy(), truth)
    assert set(recall) == {"upper", "middle", "lower", "central", "peripheral"}
    assert all(value == 1.0 for value in recall.values())


def test_zone_recall_without_the_lower_thirds():
    truth = box(ZONE_SHAPE, LEFT_ROWS, LEFT_COLS) | box(ZONE_SHAPE, RIGHT_ROWS, RIGHT_COLS)
    lower = box(ZONE_SHAPE, (LEFT_ROWS[0] + 14, LEFT_ROWS[1]), LEFT_COLS) | box(ZONE_SHAPE, (RIGHT_ROWS[0] + 14, RIGHT_ROWS[1]), RIGHT_COLS)
    recall = zone_recall(truth & ~lower, truth)
    assert recall["lower"] == 0.0
    assert recall["upper"] == 1.0 and recall["middle"] == 1.0
    # Every row is split evenly into lateral and medial halves: two thirds of the rows of each are left.
    assert recall["central"] == pytest.approx(2 / 3) and recall["peripheral"] == pytest.approx(2 / 3)


def test_zone_recall_of_ellipses_missing_their_bottoms():
    left, right = two_lungs()
    truth = left | right
    predicted = truth.copy()
    for lung in (left, right):
        rows = np.nonzero(lung.any(axis=1))[0]
        cut = rows.min() + int(0.6 * (rows.max() + 1 - rows.min()))  # drop the bottom 40 % of each lung's rows
        predicted[cut:] &= ~lung[cut:]
    recall = zone_recall(predicted, truth)
    assert recall["lower"] == pytest.approx(0.0, abs=1e-12)
    assert recall["upper"] == 1.0
    assert 0.5 < recall["middle"] < 1.0


def test_zone_recall_without_truth_is_empty():
    assert zone_recall(np.ones((8, 8), dtype=bool), np.zeros((8, 8), dtype=bool)) == {}


# ---------------------------------------------------------------------------------------------------------
# Mask AP through Ultralytics' matcher


@pytest.fixture(scope="module")
def offline_ultralytics(tmp_path_factory: pytest.TempPathFactory):
    from cxr.segment.yolo import ultralytics_offline

    return ultralytics_offline(tmp_path_factory.mktemp("ultralytics"))


def truth_instances(shift: int) -> np.ndarray:
    left, right = two_lungs(shift=shift)
    lungs = lung_components(left | right)
    assert len(lungs) == 2
    return np.stack(lungs)


def test_instance_matches_at_each_threshold(offline_ultralytics):
    truth = box((20, 20), (2, 12), (2, 12))[None]  # 100 pixels
    partial = truth[0].copy()
    partial[2:4, 2:12] = False  # 20 pixels off ...
    partial[4, 2:10] = False  # ... and 8 more: IoU 72 / 100 (no threshold near it)
    assert partial.sum() == 72
    matched = instance_matches(partial[None], np.array([0]), truth, np.array([0]))
    # thresholds 0.50, 0.55, 0.60, 0.65, 0.70 pass; 0.75 ... 0.95 do not
    assert matched.tolist() == [[True] * 5 + [False] * 5]

    # The same lung predicted twice: only the first (more confident) prediction matches.
    twice = instance_matches(np.stack([truth[0], truth[0]]), np.array([0, 0]), truth, np.array([0]))
    assert twice[0].all() and not twice[1].any()

    # The wrong class never matches; no predictions, or no truth, match nothing.
    assert not instance_matches(truth, np.array([1]), truth, np.array([0])).any()
    assert instance_matches(np.zeros((0, 20, 20), dtype=bool), np.zeros(0, dtype=np.int64), truth, np.array([0])).shape == (0, 10)
    assert instance_matches(truth, np.array([0]), np.zeros((0, 20, 20), dtype=bool), np.zeros(0)).tolist() == [[False] * 10]


def test_perfect_predictions_score_ultralytics_maximum_map(offline_ultralytics):
    matches, confidences, classes, truth_classes = [], [], [], []
    for shift, confidence in ((0, [0.3, 0.8]), (-4, [0.9, 0.1]), (3, [0.55, 0.56])):
        lungs = truth_instances(shift)
        truth_class = np.zeros(len(lungs), dtype=np.int64)
        found = instance_matches(lungs, truth_class, lungs, truth_class)
        assert found.all()
        matches.append(found)
        confidences.append(np.array(confidence))
        classes.append(truth_class)
        truth_classes.append(truth_class)
    ap = mask_average_precision(matches, confidences, classes, truth_classes)
    # Precision 1 up to recall 1, integrated by 101-point interpolation whose last point reads 0: 1 - 0.01 / 2.
    assert ap["map50"] == pytest.approx(0.995, abs=1e-3)
    assert ap["map50_95"] == pytest.approx(0.995, abs=1e-3)


def test_half_the_lungs_found_scores_about_half(offline_ultralytics):
    lungs = truth_instances(0)
    truth_class = np.zeros(2, dtype=np.int64)
    found = instance_matches(lungs[:1], truth_class[:1], lungs, truth_class)
    ap = mask_average_precision([found], [np.array([0.9])], [truth_class[:1]], [truth_class])
    assert 0.49 <= ap["map50"] <= 0.5 and 0.49 <= ap["map50_95"] <= 0.5


def test_no_predictions_score_zero_and_no_truth_nan(offline_ultralytics):
    lungs = truth_instances(0)
    truth_class = np.zeros(2, dtype=np.int64)
    nothing = np.zeros((0, *lungs.shape[1:]), dtype=bool)
    found = instance_matches(nothing, np.zeros(0, dtype=np.int64), lungs, truth_class)
    ap = mask_average_precision([found], [np.zeros(0)], [np.zeros(0, dtype=np.int64)], [truth_class])
    assert ap == {"map50": 0.0, "map50_95": 0.0}
    assert mask_average_precision([], [], [], []) == pytest.approx({"map50": math.nan, "map50_95": math.nan}, nan_ok=True)


# ---------------------------------------------------------------------------------------------------------
# Export for Ultralytics

EXPORT_SHAPE = (64, 64)


def split_arrays(split: int, count: int, empty: int | None = None) -> SplitArrays:
    rng = np.random.default_rng(split)
    images = rng.integers(0, 256, size=(count, *EXPORT_SHAPE), dtype=np.uint8)
    masks = np.zeros((count, *EXPORT_SHAPE), dtype=bool)
    for index in range(count):
        if index != empty:
            left, right = two_lungs(EXPORT_SHAPE, shift=index - 1)
            masks[index] = left | right
    labels = np.array([(split + index) % 3 for index in range(count)], dtype=np.int64)
    names = np.array([f"{CLASSES[label]}/images/{CLASSES[label]}-{split}{index}.png" for index, label in enumerate(labels)])
    return SplitArrays(images, masks, labels, names)


@pytest.fixture
def splits() -> dict[str, SplitArrays]:
    return {"train": split_arrays(0, 3, empty=1), "val": split_arrays(1, 2), "test": split_arrays(2, 3)}


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_file_stem_flattens_the_source_path():
    assert file_stem("COVID/images/COVID-1.png") == "COVID__images__COVID-1"


def test_export_in_lung_mode(tmp_path, splits):
    out = tmp_path / "exp"
    report = export_dataset(splits, out, "lung", CLASSES)
    assert report["label_mode"] == "lung"
    assert report["images"] == {"train": 2, "val": 2, "test": 3}
    assert report["without_mask"] == {"train": 1, "val": 0, "test": 0}
    assert report["lungs"] == {"train": 4, "val": 4, "test": 6}
    assert report["more_than_two_lungs"] == {"train": 0, "val": 0, "test": 0}

    data = yaml.safe_load((out / DATA_YAML).read_text())
    assert data["names"] == {0: "lung"}
    assert "path" not in data
    assert {data[split] for split in ("train", "val", "test")} == {"images/train", "images/val", "images/test"}
    assert yaml.safe_load((out / EXPORT_REPORT).read_text()) == report

    for split, arrays in splits.items():
        written = [index for index in range(len(arrays)) if arrays.masks[index].any()]
        stems = sorted(file_stem(str(arrays.names[index])) for index in written)
        assert sorted(path.stem for path in (out / "images" / split).glob("*.png")) == stems
        assert sorted(path.stem for path in (out / "labels" / split).glob("*.txt")) == stems
        assert len(list((out / "images" / split).iterdir())) == len(stems)
        for index in written:
            stem = file_stem(str(arrays.names[index]))
            assert np.array_equal(np.asarray(Image.open(out / "images" / split / f"{stem}.png")), arrays.images[index])
            objects = read_label_lines((out / "labels" / split / f"{stem}.txt").read_text().splitlines(), EXPORT_SHAPE)
            assert len(objects) == 2 and all(class_id == 0 for class_id, _ in objects)
            restored = polygons_to_mask([points for _, points in objects], EXPORT_SHAPE)
            assert overlap(restored, arrays.masks[index]) >= 0.95
    skipped = file_stem(str(splits["train"].names[1]))
    assert not (out / "images" / "train" / f"{skipped}.png").exists()
    assert not (out / "labels" / "train" / f"{skipped}.txt").exists()


def test_export_in_diagnosis_mode_labels_each_lung_with_the_diagnosis(tmp_path, splits):
    out = tmp_path / "exp"
    report = export_dataset(splits, out, "diagnosis", CLASSES)
    assert report["label_mode"] == "diagnosis"
    assert yaml.safe_load((out / DATA_YAML).read_text())["names"] == {0: "COVID-19", 1: "Pneumonia", 2: "Normal"}
    seen = set()
    for split, arrays in splits.items():
        for mask, label, name in zip(arrays.masks, arrays.labels, arrays.names):
            path = out / "labels" / split / f"{file_stem(str(name))}.txt"
            if not mask.any():
                assert not path.exists()
                continue
            lines = path.read_text().splitlines()
            assert len(lines) == 2
            assert {int(line.split()[0]) for line in lines} == {int(label)}
            seen.add(int(label))
    assert seen == {0, 1, 2}


def test_export_is_deterministic(tmp_path, splits):
    first = export_dataset(splits, tmp_path / "one", "lung", CLASSES)
    second = export_dataset(splits, tmp_path / "two", "lung", CLASSES)
    assert first == second
    files = folder_bytes(tmp_path / "one")
    assert files and files == folder_bytes(tmp_path / "two")
    export_dataset(splits, tmp_path / "one", "lung", CLASSES)  # again over the existing folder: replaced whole
    assert folder_bytes(tmp_path / "one") == files
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one", "two"]  # no temporary folders left behind


# ---------------------------------------------------------------------------------------------------------
# Evaluation helpers


def test_diagnosis_probabilities_take_each_class_best_instance():
    found = instances(np.zeros((3, 4, 4)), [0.9, 0.6, 0.3], [2, 0, 2])
    # per class max: [0.6, 0, 0.9], normalised by 1.5
    assert diagnosis_probabilities(found, 3) == pytest.approx([0.4, 0.0, 0.6], abs=1e-7)
    assert diagnosis_probabilities(found, 3).sum() == pytest.approx(1.0)


def test_diagnosis_probabilities_without_instances_are_uniform():
    none = instances(np.zeros((0, 4, 4)), [], [])
    assert diagnosis_probabilities(none, 3) == pytest.approx([1 / 3] * 3)
    assert diagnosis_probabilities(none, 4) == pytest.approx([0.25] * 4)


def test_image_record_of_a_perfect_prediction():
    left, right = two_lungs()
    probabilities = np.stack([left, right]).astype(np.float32)
    found = instances(probabilities, [0.8, 0.7], [1, 2])
    record = image_record("a.png", "Pneumonia", found, left | right, "full", CLASSES, "diagnosis")
    assert record["has_truth"] and record["dice"] == 1.0 and record["iou"] == 1.0
    assert record["instances"] == 2 and record["top_confidence"] == pytest.approx(0.8)
    assert record["plausible"] == 1.0 and record["predicted"] == "Pneumonia"
    unlabelled = image_record("b.png", "Normal", found, np.zeros_like(left), "full", CLASSES, "lung")
    assert not unlabelled["has_truth"] and math.isnan(unlabelled["dice"]) and math.isnan(unlabelled["iou"])
    assert "predicted" not in unlabelled


def test_worst_first_orders_by_dice_then_rows_without_truth():
    nan = float("nan")
    records = [
        {"name": "a", "dice": 0.9, "plausible": 1.0, "top_confidence": 0.9},
        {"name": "b", "dice": nan, "plausible": 1.0, "top_confidence": 0.2},
        {"name": "c", "dice": 0.2, "plausible": 1.0, "top_confidence": 0.9},
        {"name": "d", "dice": 0.5, "plausible": 0.0, "top_confidence": 0.9},
        {"name": "e", "dice": nan, "plausible": 0.0, "top_confidence": 0.8},
        {"name": "f", "dice": nan, "plausible": 0.0, "top_confidence": 0.3},
        {"name": "g", "dice": 0.2, "plausible": 1.0, "top_confidence": 0.1},
    ]
    # Dice ascending (ties by name), then without truth: implausible first, then least confident.
    assert worst_first(records) == [2, 6, 3, 0, 5, 4, 1]
    assert worst_first([]) == []


# ---------------------------------------------------------------------------------------------------------
# Interpretation


def test_uncertainty_map_is_one_bit_at_half_and_zero_where_sure():
    probabilities = np.zeros((2, 12, 12), dtype=np.float32)
    probabilities[0, 2:6, 2:6] = 0.5  # unsure
    probabilities[1, 6:10, 6:10] = 1.0  # sure lung
    probabilities[0, 8:10, 8:10] = 0.5  # overlapped by the sure instance: the highest probability counts
    uncertainty = uncertainty_map(instances(probabilities, [0.9, 0.8], [0, 0]))
    assert uncertainty.shape == (12, 12) and uncertainty.dtype == np.float32
    assert np.all(uncertainty[2:6, 2:6] == pytest.approx(1.0, abs=1e-6))
    sure = np.ones((12, 12), dtype=bool)
    sure[2:6, 2:6] = False
    assert uncertainty[sure].max() < 1e-4
    assert ((uncertainty >= 0) & (uncertainty <= 1 + 1e-6)).all()


def test_uncertainty_map_between_sure_and_unsure():
    probabilities = np.full((1, 2, 2), 0.25, dtype=np.float32)
    expected = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # 0.811... bits
    assert uncertainty_map(instances(probabilities, [0.5], [0])) == pytest.approx(np.full((2, 2), expected), abs=1e-6)


def test_uncertainty_map_without_instances_is_zero():
    uncertainty = uncertainty_map(instances(np.zeros((0, 5, 7)), [], []))
    assert uncertainty.shape == (5, 7) and uncertainty.max() < 1e-4


def square_ring(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    """Pixels within BORDER_PIXELS steps (4-connected) of the square's outline, either side: outside, an L1
    distance of at most BORDER_PIXELS from the square; inside, fewer than BORDER_PIXELS + 1 rows or columns
    from its edge."""
    row, column = np.mgrid[0:shape[0], 0:shape[1]]
    bottom, right = top + side - 1, left + side - 1
    outside = np.maximum(0, np.maximum(top - row, row - bottom)) + np.maximum(0, np.maximum(left - column, column - right))
    inside = (outside == 0)
    depth = np.minimum.reduce([row - top, bottom - row, column - left, right - column])
    return ((outside > 0) & (outside <= BORDER_PIXELS)) | (inside & (depth < BORDER_PIXELS))


def test_border_share_of_a_ring_and_of_a_uniform_map():
    shape, top, left, side = (32, 32), 10, 11, 10
    truth = box(shape, (top, top + side), (left, left + side))
    ring = square_ring(shape, top, left, side)
    assert BORDER_PIXELS == 2
    # (side + 4)^2 minus three pixels cut off each corner by the 4-connected dilation, minus the inner (side - 4)^2
    assert ring.sum() == 16 * side - 12
    assert border_share(ring.astype(np.float32), truth) == pytest.approx(1.0, abs=1e-12)
    uniform = np.full(shape, 0.3, dtype=np.float32)
    assert border_share(uniform, truth) == pytest.approx(ring.sum() / ring.size, rel=1e-6)
    inside_only = (truth & ~ring).astype(np.float32)  # the square's 6 x 6 core
    assert inside_only.sum() == (side - 4) ** 2 and border_share(inside_only, truth) == 0.0


def test_border_share_without_truth_or_uncertainty_is_nan():
    truth = box((16, 16), (4, 10), (4, 10))
    assert math.isnan(border_share(np.ones((16, 16)), np.zeros((16, 16), dtype=bool)))
    assert math.isnan(border_share(np.zeros((16, 16)), truth))


# ---------------------------------------------------------------------------------------------------------
# Split metrics, label mode `diagnosis`, and the report's tables


def perfect_split(label_mode: str, wrong: int | None = None) -> tuple[SplitArrays, list[LungInstances], list[dict]]:
    """Six films (two per class) whose predicted lungs are the true ones; in `diagnosis` mode each lung
    carries the film's class, except film `wrong`, whose lungs are called the next class."""
    left, right = two_lungs()
    truth = left | right
    labels = np.array([0, 1, 2, 0, 1, 2])
    found = []
    for index, label in enumerate(labels):
        cls = 0 if label_mode == "lung" else (int(label) + (index == wrong)) % len(CLASSES)
        found.append(instances(np.stack([left, right]).astype(np.float32), [0.9, 0.8], [cls, cls]))
    split = SplitArrays(np.zeros((6, *truth.shape), dtype=np.uint8), np.stack([truth] * 6), labels,
                        np.array([f"f{i}.png" for i in range(6)]))
    records = [image_record(str(n), CLASSES[lab], f, truth, "full", CLASSES, label_mode)
               for n, lab, f in zip(split.names, labels, found)]
    return split, found, records


def test_split_metrics_of_perfect_masks(offline_ultralytics):
    from cxr.segment.evaluate import segmentation_metrics

    split, found, records = perfect_split("lung")
    metrics = segmentation_metrics(split, found, records, CLASSES, "lung", resamples=50, level=0.95, seed=0, calibration_bins=10)
    assert metrics["dice"] == metrics["dice_ci_low"] == metrics["dice_ci_high"] == 1.0
    assert metrics["images"] == metrics["images_with_truth"] == 6
    assert metrics["mask_map50"] == pytest.approx(0.995, abs=1e-3)
    assert metrics["empty"] == metrics["more_than_two"] == metrics["touches_border"] == 0
    assert metrics["two_lungs"] == metrics["plausible"] == 1.0
    assert all(metrics[f"zone_recall_{zone}_covid19"] == 1.0 for zone in ("upper", "middle", "lower"))
    assert not any(key.startswith("diagnosis_") for key in metrics)


def test_diagnosis_mode_scores_the_segmenter_as_a_classifier(offline_ultralytics):
    from cxr.report.summary import diagnosis_runs
    from cxr.segment.evaluate import segmentation_metrics

    split, found, records = perfect_split("diagnosis", wrong=4)
    metrics = segmentation_metrics(split, found, records, CLASSES, "diagnosis", resamples=50, level=0.95, seed=0, calibration_bins=10)
    assert metrics["diagnosis_accuracy"] == pytest.approx(5 / 6)
    assert metrics["diagnosis_n_test"] == 6
    assert [r["predicted"] for r in records] == ["COVID-19", "Pneumonia", "Normal", "COVID-19", "Normal", "Normal"]
    # The mislabelled film's lungs are false positives of one class and misses of another: below the perfect 0.995.
    assert metrics["mask_map50"] < 0.99
    [(dataset, model, row)] = diagnosis_runs([("lungs", metrics, {})])
    assert (dataset, model, row["accuracy"], row["n_test"]) == ("lungs", "yolov8n-seg", pytest.approx(5 / 6), 6)
    lung_mode = segmentation_metrics(*perfect_split("lung"), CLASSES, "lung", resamples=50, level=0.95, seed=0,
                                     calibration_bins=10)
    assert diagnosis_runs([("lungs", lung_mode, {})]) == []


def test_cascade_table_states_the_change_per_model_signed_as_the_cross_tests():
    from cxr.report.summary import cascade_table

    own = {"accuracy": 0.9, "accuracy_ci_low": 0.8, "accuracy_ci_high": 0.95, "macro_f1": 0.88}
    cut = {"accuracy": 0.75, "accuracy_ci_low": 0.6, "accuracy_ci_high": 0.85, "macro_f1": 0.7, "n_test": 40}
    table = cascade_table([("lungs", "lungs_segmented", "resnet18", cut, own)], "95%")
    # Worse with the segmenter's masks: a negative change, as a cross test that loses is ("Macro-F1 change").
    assert "| resnet18 | 0.900 [0.800, 0.950] | 0.750 [0.600, 0.850] | -0.150 | -0.180 | 40 |" in table


# ---------------------------------------------------------------------------------------------------------
# Masks of whole films: the segmenter's square view mapped back onto the film


@pytest.mark.parametrize("shape", [(96, 96), (90, 121), (121, 90), (80, 97)], ids=str)
def test_film_mask_maps_the_square_view_back_onto_the_film(monkeypatch, shape):
    """A segmenter that returns the true lungs of the square it is shown gives back the film's own mask,
    for tall, wide and odd-padded films (the square's padding is split unevenly there)."""
    import cxr.segment.films as films
    from cxr.data.views import make_view

    height, width = shape
    left, right = two_lungs(shape)
    truth = left | right
    film = np.where(truth, 60, 190).astype(np.uint8)

    def perfect_segmenter(net, square, image_size, confidence, num_classes, device):
        _, mask = make_view(film, truth, "full", image_size, 0.0)  # the true lungs, framed as the square
        yield instances(mask[None].astype(np.float32), [0.9], [0])

    monkeypatch.setattr(films, "segment_lungs", perfect_segmenter)
    mask = films.film_mask(None, film, 128, 0.25, 1)
    assert mask.shape == shape
    assert overlap(mask, truth) >= 0.95
    for axis in (0, 1):  # not shifted by the padding
        assert abs(np.nonzero(mask)[axis].mean() - np.nonzero(truth)[axis].mean()) < 0.5


def test_from_split_needs_a_test_only_dataset():
    from pydantic import ValidationError

    from cxr.data.params import DatasetParams

    assert DatasetParams(source="s", view="lungs", test_only=True, from_split="test").from_split == "test"
    with pytest.raises(ValidationError, match="from_split takes one split of the source.*test_only: true"):
        DatasetParams(source="s", view="lungs", from_split="test")


def test_records_read_back_with_the_types_they_were_written_with(tmp_path):
    """predictions.csv round trip: a file named "NA" stays a name, an undefined Dice stays NaN, flags and counts
    come back as bool and int; rows that are not the test split's images in order are refused."""
    records = [{"name": "NA", "label": "Normal", "has_truth": False, "dice": float("nan"), "instances": 0,
                "top_confidence": 0.0, "predicted": "null"},
               {"name": "COVID-19/a.png", "label": "COVID-19", "has_truth": True, "dice": 0.8765432, "instances": 2,
                "top_confidence": 0.5, "predicted": "COVID-19"}]
    path = tmp_path / "predictions.csv"
    write_records(path, records)
    read = read_records(path, np.array(["NA", "COVID-19/a.png"]))
    assert [type(read[0][key]) for key in records[0]] == [str, str, bool, float, int, float, str]
    assert math.isnan(read[0]["dice"]) and read[0]["name"] == "NA" and read[0]["predicted"] == "null"
    assert read[1] == {**records[1], "dice": 0.876543}
    with pytest.raises(ValueError, match="does not list this test split's images"):
        read_records(path, np.array(["COVID-19/a.png", "NA"]))
