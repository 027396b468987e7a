"""Explanations: lung scores on hand-made maps, the CAM layer per architecture and size, the maps themselves,
and a tiny model whose class signal lies only in the lungs, whose maps must then favour the lungs."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from cxr.explain.layers import LayerError, choose_target_layer, feature_grids
from cxr.explain.maps import _gradients_on, class_activation_maps, road_scores, saliency_maps
from cxr.explain.params import ExplainParams
from cxr.explain.results import Explanations
from cxr.explain.run import explain_split, explanation_metrics, read_predictions, select_images
from cxr.anatomy.lungs import ZONES, lung_sides, zone_masks
from cxr.explain.scores import lung_energy_fraction, lung_lift, pointing_hit, zone_involvement, zone_shares
from cxr.io.arrays import SplitArrays, intensity_stats
from cxr.metrics.classification import slug, write_evaluation
from cxr.metrics.intervals import mean_interval
from cxr.models.inference import model_input
from cxr.models.registry import STUDY_ARCHS, build_model
from tests.conftest import REPO

# ---------------------------------------------------------------------------------------------------------
# Hand-made masks: two rectangle lungs in a 30 x 40 image, each 21 rows high (thirds of exactly 7 rows)
# and an even number of columns wide (halves of equal width).
H, W = 30, 40
LEFT_ROWS, LEFT_COLS = (3, 24), (4, 16)  # 21 rows, 12 columns
RIGHT_ROWS, RIGHT_COLS = (6, 27), (22, 36)  # 21 rows, 14 columns


def box(rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    region = np.zeros((H, W), dtype=bool)
    region[rows[0]:rows[1], cols[0]:cols[1]] = True
    return region


LEFT = box(LEFT_ROWS, LEFT_COLS)
RIGHT = box(RIGHT_ROWS, RIGHT_COLS)
LUNGS = LEFT | RIGHT


def thirds(rows: tuple[int, int], cols: tuple[int, int]) -> list[np.ndarray]:
    step = (rows[1] - rows[0]) // 3
    return [box((rows[0] + i * step, rows[0] + (i + 1) * step), cols) for i in range(3)]


def halves(rows: tuple[int, int], cols: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(image-left half, image-right half) of a rectangle."""
    middle = (cols[0] + cols[1]) // 2
    return box(rows, (cols[0], middle)), box(rows, (middle, cols[1]))


def expected_zones() -> dict[str, np.ndarray]:
    left_thirds, right_thirds = thirds(LEFT_ROWS, LEFT_COLS), thirds(RIGHT_ROWS, RIGHT_COLS)
    left_outer, left_inner = halves(LEFT_ROWS, LEFT_COLS)  # the left lung's lateral half is its image-left half
    right_inner, right_outer = halves(RIGHT_ROWS, RIGHT_COLS)
    return {"upper": left_thirds[0] | right_thirds[0], "middle": left_thirds[1] | right_thirds[1],
            "lower": left_thirds[2] | right_thirds[2], "central": left_inner | right_inner,
            "peripheral": left_outer | right_outer}


def ellipse(centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    row, column = np.mgrid[0:H, 0:W]
    return ((row - centre[0]) / radii[0]) ** 2 + ((column - centre[1]) / radii[1]) ** 2 <= 1


# ---------------------------------------------------------------------------------------------------------
# Energy fraction, lift, pointing game


@pytest.mark.parametrize("value", [1.0, 0.3, 0.01])
def test_uniform_map_scores_the_lungs_share_and_lift_one(value):
    heatmap = np.full((H, W), value, dtype=np.float32)
    assert lung_energy_fraction(heatmap, LUNGS) == pytest.approx(LUNGS.sum() / (H * W), rel=1e-6)
    assert lung_lift(heatmap, LUNGS) == pytest.approx(1.0, rel=1e-6)


def test_map_inside_the_lungs_only_scores_one_and_outside_only_zero():
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.1, 1.0, (H, W)).astype(np.float32)
    inside, outside = np.where(LUNGS, noise, 0), np.where(LUNGS, 0, noise)
    assert lung_energy_fraction(inside, LUNGS) == pytest.approx(1.0, abs=1e-6)
    assert lung_lift(inside, LUNGS) == pytest.approx(H * W / LUNGS.sum(), rel=1e-6)
    assert lung_energy_fraction(outside, LUNGS) == 0.0
    assert lung_lift(outside, LUNGS) == 0.0
    # Half the mass in, half out.
    half = np.where(LUNGS, 1.0 / LUNGS.sum(), 1.0 / (~LUNGS).sum())
    assert lung_energy_fraction(half, LUNGS) == pytest.approx(0.5)


def test_zero_map_points_nowhere():
    zero = np.zeros((H, W), dtype=np.float32)
    assert math.isnan(lung_energy_fraction(zero, LUNGS))
    assert math.isnan(lung_lift(zero, LUNGS))
    assert math.isnan(pointing_hit(zero, LUNGS))
    assert all(math.isnan(v) for v in zone_shares(zero, LUNGS).values())
    assert all(math.isnan(v) for v in zone_involvement(zero, LUNGS).values())


def test_pointing_hit_follows_the_maximum():
    rng = np.random.default_rng(1)
    background = rng.uniform(0, 0.5, (H, W)).astype(np.float32)
    inside_peak, outside_peak = background.copy(), background.copy()
    inside_peak[10, 8] = 1.0  # in the left lung
    outside_peak[1, 1] = 1.0
    assert LUNGS[10, 8] and not LUNGS[1, 1]
    assert pointing_hit(inside_peak, LUNGS) == 1.0
    assert pointing_hit(outside_peak, LUNGS) == 0.0
    # A saturated plateau: a hit when most of its pixels are in the lungs.
    mostly_in, mostly_out = background.copy(), background.copy()
    for r, c in [(10, 8), (11, 8), (12, 25), (1, 1)]:  # three in, one out
        mostly_in[r, c] = 1.0
    for r, c in [(10, 8), (1, 1), (1, 2), (28, 38)]:  # one in, three out
        mostly_out[r, c] = 1.0
    assert pointing_hit(mostly_in, LUNGS) == 1.0
    assert pointing_hit(mostly_out, LUNGS) == 0.0


# ---------------------------------------------------------------------------------------------------------
# Lung sides and zones


def test_lung_sides_are_the_two_lungs_image_left_first():
    speck = box((0, 1), (0, 1))  # a stray pixel is neither lung
    left, right = lung_sides(RIGHT | LEFT | speck)
    assert np.array_equal(left, LEFT) and np.array_equal(right, RIGHT)


def test_lung_sides_split_a_one_region_mask_at_its_centre():
    bridge = box((12, 14), LEFT_COLS[:1] + RIGHT_COLS[1:])  # both lungs drawn as one connected region
    joined = LUNGS | bridge
    columns = np.nonzero(joined)[1]
    middle = (columns.min() + columns.max()) / 2  # (4 + 35) / 2 = 19.5
    column = np.arange(W)[None, :]
    left, right = lung_sides(joined)
    assert np.array_equal(left, joined & (column < middle)) and np.array_equal(right, joined & (column > middle))
    assert left.any() and right.any() and not (left & right).any() and np.array_equal(left | right, joined)
    # Two regions one above the other are not two lungs either: split at the centre as well.
    top, bottom = box((2, 10), (5, 30)), box((14, 25), (8, 35))
    left, right = lung_sides(top | bottom)
    middle = (5 + 34) / 2
    assert np.array_equal(left, (top | bottom) & (column < middle)) and np.array_equal(right, (top | bottom) & (column > middle))


def test_zone_masks_of_two_rectangle_lungs():
    zones = zone_masks(LUNGS)
    expected = expected_zones()
    assert set(zones) == set(ZONES)
    for zone in ZONES:
        assert np.array_equal(zones[zone], expected[zone]), zone
    assert zones["upper"].sum() == zones["middle"].sum() == zones["lower"].sum() == LUNGS.sum() / 3
    assert zones["central"].sum() == zones["peripheral"].sum() == LUNGS.sum() / 2


def test_zones_partition_any_two_lungs_by_rows_and_by_lateral_halves():
    lungs = ellipse((14, 10), (11, 6)) | ellipse((15, 29), (12, 7))
    zones = zone_masks(lungs)
    for group in (("upper", "middle", "lower"), ("central", "peripheral")):
        assert np.array_equal(np.logical_or.reduce([zones[z] for z in group]), lungs), group
        total = sum(zones[z].astype(int) for z in group)
        assert total.max() == 1, f"{group} overlap"
    for side, lung in enumerate(lung_sides(lungs)):
        rows = np.nonzero(lung.any(axis=1))[0]
        # Thirds of each lung's height: bands of whole rows, top to bottom.
        bands = [np.nonzero((zones[z] & lung).any(axis=1))[0] for z in ("upper", "middle", "lower")]
        assert np.array_equal(np.concatenate(bands), rows)
        assert max(len(b) for b in bands) - min(len(b) for b in bands) <= 1
        for r in rows:
            lateral = np.nonzero(zones["peripheral"][r] & lung[r])[0]
            medial = np.nonzero(zones["central"][r] & lung[r])[0]
            assert abs(len(lateral) - len(medial)) <= 1
            if len(lateral) and len(medial):
                # Peripheral is the half away from the midline: left of the left lung, right of the right.
                assert (lateral.max() < medial.min()) if side == 0 else (lateral.min() > medial.max())


def test_zone_shares_of_a_map_in_the_lower_thirds():
    expected = expected_zones()
    heatmap = expected["lower"].astype(np.float32)
    heatmap[0, :] = 5.0  # mass outside the lungs does not count
    shares = zone_shares(heatmap, LUNGS)
    assert shares["lower"] == pytest.approx(1.0) and shares["upper"] == 0.0 and shares["middle"] == 0.0
    # The lower thirds are half central, half peripheral.
    assert shares["central"] == pytest.approx(0.5) and shares["peripheral"] == pytest.approx(0.5)
    involved = zone_involvement(heatmap, LUNGS)
    assert involved == {"upper": 0.0, "middle": 0.0, "lower": 1.0, "central": 1.0, "peripheral": 1.0}
    lateral = zone_shares(expected["peripheral"] * 0.7, LUNGS)
    assert lateral["peripheral"] == pytest.approx(1.0) and lateral["central"] == 0.0
    assert lateral["upper"] + lateral["middle"] + lateral["lower"] == pytest.approx(1.0)


@pytest.mark.parametrize("value", [1.0, 0.3, 0.01, 0.77])
def test_uniform_map_involves_every_zone(value):
    """A uniform map is exactly as dense in each zone as over the lungs: share == area share, so involved."""
    for lungs in (LUNGS, ellipse((14, 10), (11, 6)) | ellipse((15, 29), (12, 7))):
        heatmap = np.full((H, W), value, dtype=np.float32)
        assert zone_involvement(heatmap, lungs) == dict.fromkeys(ZONES, 1.0)
        shares = zone_shares(heatmap, lungs)
        for zone, region in zone_masks(lungs).items():
            assert shares[zone] == pytest.approx(region.sum() / lungs.sum())


# ---------------------------------------------------------------------------------------------------------
# Intervals


def test_mean_interval():
    assert mean_interval(np.full(7, 0.25), 200, 0.95, 0) == (0.25, 0.25, 0.25)
    assert mean_interval(np.array([0.4]), 200, 0.95, 0) == (0.4, 0.4, 0.4)
    assert all(math.isnan(v) for v in mean_interval(np.array([np.nan, np.nan]), 200, 0.95, 0))
    values = np.random.default_rng(3).uniform(0, 1, 25)
    mean, low, high = mean_interval(values, 500, 0.95, 7)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    assert mean_interval(values, 500, 0.95, 7) == (mean, low, high)
    assert mean_interval(np.concatenate([values, [np.nan, np.nan]]), 500, 0.95, 7) == (mean, low, high)
    _, low80, high80 = mean_interval(values, 500, 0.80, 7)  # same resamples, narrower percentiles
    assert low <= low80 < high80 <= high


# ---------------------------------------------------------------------------------------------------------
# CAM layer


def default_sizes() -> dict[str, int]:
    """model.<name>.image_size of params.yaml for the study's four architectures."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    sizes = {entry["arch"]: entry["image_size"] for entry in params["model"].values() if entry["arch"] in STUDY_ARCHS}
    assert set(sizes) == set(STUDY_ARCHS)
    return sizes


def default_min_grid() -> int:
    return yaml.safe_load((REPO / "params.yaml").read_text())["explain"]["min_grid"]


@pytest.mark.parametrize("arch", STUDY_ARCHS)
def test_target_layer_at_default_size_is_the_deepest_with_a_fine_enough_grid(arch):
    size, min_grid = default_sizes()[arch], default_min_grid()
    model = build_model(arch, 3, size)
    layer = choose_target_layer(model, size, min_grid)
    grids = feature_grids(model, size)
    names = [name for name, _ in grids]
    assert min(layer.grid) >= min_grid
    assert (layer.name, layer.grid) in grids and layer.module is model.get_submodule(layer.name)
    deeper = grids[names.index(layer.name) + 1:]
    assert deeper, "a deeper stage than the CAM layer exists"
    assert min(deeper[0][1]) < min_grid and all(min(grid) < min_grid for _, grid in deeper)
    # The grid is the layer's real feature map: capture it during a forward pass.
    seen = []
    hook = layer.module.register_forward_hook(lambda _m, _i, output: seen.append(tuple(output.shape[-2:])))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    hook.remove()
    assert seen == [layer.grid]


@pytest.mark.parametrize("arch, size, name, grid", [("resnet18", 224, "layer4", 7), ("densenet161", 224, "features.norm5", 7),
                                                    ("inception_v3", 299, "Mixed_7c", 8), ("resnet18", 112, "layer3", 7)])
def test_target_layer_at_full_size(arch, size, name, grid):
    layer = choose_target_layer(build_model(arch, 3, size), size, 7)
    assert (layer.name, layer.grid) == (name, (grid, grid))


def test_impossible_grid_is_refused_and_the_training_flag_restored():
    model = build_model("resnet18", 3, 64)
    with pytest.raises(LayerError, match="image_size") as caught:
        choose_target_layer(model.train(), 64, 50)
    assert "explain.min_grid" in str(caught.value) and "64 px" in str(caught.value)
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules()), "no hook is left behind"
    choose_target_layer(model.eval(), 64, 7)
    assert not any(m.training for m in model.modules())
    choose_target_layer(model.train(), 64, 7)
    assert all(m.training for m in model.modules())


# ---------------------------------------------------------------------------------------------------------
# Synthetic "X-rays": two rectangle lungs; the class is the orientation of stripes, which lie only inside the
# lungs (or, for the control, only outside them); everything else is noise of the same contrast.
RAW = 80  # stored size; models resize to their own input size


def lung_mask(size: int = RAW) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    rows = slice(size * 15 // 80, size * 65 // 80)
    mask[rows, size * 12 // 80:size * 34 // 80] = True
    mask[rows, size * 46 // 80:size * 68 // 80] = True
    return mask


def striped(count: int, seed: int, signal: str = "lungs") -> SplitArrays:
    """Class 0: horizontal stripes, class 1: vertical, with a random phase, in the lungs (or outside them)."""
    rng = np.random.default_rng(seed)
    mask = lung_mask()
    row, column = np.mgrid[0:RAW, 0:RAW]
    labels = np.arange(count) % 2
    images = np.empty((count, RAW, RAW), dtype=np.uint8)
    for i, label in enumerate(labels):
        noise = rng.normal(128, 40, (RAW, RAW))
        stripes = 128 + 60 * np.sin(2 * np.pi * (row if label == 0 else column) / 6 + rng.uniform(0, 2 * np.pi))
        stripes += rng.normal(0, 10, (RAW, RAW))
        image = np.where(mask, stripes, noise) if signal == "lungs" else np.where(mask, noise, stripes)
        images[i] = np.clip(np.where(mask, image - 38, image), 0, 255)  # darker lungs, as on an X-ray
    names = np.array([f"img_{seed}_{i:03d}.png" for i in range(count)])
    return SplitArrays(images, np.repeat(mask[None], count, axis=0), labels.astype(np.int64), names)


def train_briefly(arch: str, size: int, data: SplitArrays, epochs: int, seed: int = 0, batch: int = 16):
    """(model in eval mode, mean, std): a few AdamW epochs from random init, as train_classifier would."""
    torch.manual_seed(seed)
    model = build_model(arch, 2, size)
    mean, std = intensity_stats(data.images)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = torch.from_numpy(data.images)[:, None], torch.from_numpy(data.labels)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(labels), generator=order).split(batch):
            loss = F.cross_entropy(model(model_input(images[index], size, mean, std)), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), mean, std


def inputs_of(data: SplitArrays, size: int, mean, std) -> torch.Tensor:
    return model_input(torch.from_numpy(np.asarray(data.images))[:, None], size, mean, std)


def masks_at(data: SplitArrays, size: int) -> np.ndarray:
    masks = torch.from_numpy(np.asarray(data.masks))[:, None].float()
    return F.interpolate(masks, size=(size, size), mode="nearest")[:, 0].numpy() > 0.5


def predicted(model, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(inputs).argmax(dim=1).numpy()


SIZE = 64  # resnet18 at 64 px: layer2 has an 8x8 map


@pytest.fixture(scope="module")
def lung_model():
    """resnet18 trained on stripes in the lungs: (model, mean, std)."""
    return train_briefly("resnet18", SIZE, striped(64, seed=0), epochs=4)


# ---------------------------------------------------------------------------------------------------------
# Maps


@pytest.mark.slow
@pytest.mark.parametrize("arch", STUDY_ARCHS)
def test_maps_at_default_size(arch):
    size = default_sizes()[arch]
    data = striped(32, seed=5)
    model, mean, std = train_briefly(arch, size, data, epochs=1, batch=8)
    layer = choose_target_layer(model, size, default_min_grid())
    inputs = inputs_of(dataclasses.replace(data, images=data.images[:2]), size, mean, std)
    classes = predicted(model, inputs)
    maps = {"cam": class_activation_maps(model, layer, inputs, classes),
            "saliency": saliency_maps(model, inputs, classes),
            "smoothgrad": saliency_maps(model, inputs, classes, samples=3, noise=0.1, seed=1)}
    for kind, value in maps.items():
        assert value.shape == (2, size, size) and value.dtype == np.float32, kind
        assert value.min() >= 0 and value.max() <= 1, kind
        assert (value.reshape(2, -1).max(axis=1) > value.reshape(2, -1).min(axis=1)).all(), f"{kind} map is constant"
    road = road_scores(model, inputs, maps["cam"], classes, [20, 60])
    assert road.shape == (2,) and np.isfinite(road).all()


@pytest.mark.slow
def test_smoothgrad_differs_from_vanilla_and_is_reproducible(lung_model):
    model, mean, std = lung_model
    inputs = inputs_of(striped(4, seed=11), SIZE, mean, std)
    classes = predicted(model, inputs)
    vanilla = saliency_maps(model, inputs, classes)
    smooth = saliency_maps(model, inputs, classes, samples=4, noise=0.15, seed=3)
    assert not np.allclose(vanilla, smooth, atol=1e-3)
    assert np.array_equal(smooth, saliency_maps(model, inputs, classes, samples=4, noise=0.15, seed=3))
    assert not np.array_equal(smooth, saliency_maps(model, inputs, classes, samples=4, noise=0.15, seed=4))
    # One sample is plain gradients, whatever the noise.
    assert np.array_equal(vanilla, saliency_maps(model, inputs, classes, samples=1, noise=0.15, seed=3))
    assert smooth.reshape(len(smooth), -1).max(axis=1).tolist() == [1.0] * len(smooth), "scaled to 1 per image"


def test_maps_leave_frozen_parameters_frozen(lung_model):
    model, mean, std = lung_model
    frozen = [name for name, _ in model.named_parameters() if not name.startswith(("fc.", "layer4."))]
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        for name, p in model.named_parameters():
            p.requires_grad_(name not in frozen)
        inputs = inputs_of(striped(2, seed=12), SIZE, mean, std)
        layer = choose_target_layer(model, SIZE, 7)
        cam = class_activation_maps(model, layer, inputs, [0, 1])
        saliency = saliency_maps(model, inputs, [0, 1])
        assert cam.max() > 0 and saliency.max() > 0, "gradients flowed through the frozen layers"
        for name, p in model.named_parameters():
            assert p.requires_grad == (name not in frozen), name
            assert p.grad is None, f"{name} keeps a gradient"
        with _gradients_on(model):
            assert all(p.requires_grad for p in model.parameters())
        assert [p.requires_grad for p in model.parameters()] == [name not in frozen for name, _ in model.named_parameters()]
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])


# ---------------------------------------------------------------------------------------------------------
# The science: a model whose class signal lies only in the lungs is explained by maps that favour the lungs


def lung_lifts(model, mean, std, test: SplitArrays) -> dict[str, np.ndarray]:
    inputs, masks = inputs_of(test, SIZE, mean, std), masks_at(test, SIZE)
    classes = predicted(model, inputs)
    assert (classes == test.labels).mean() >= 0.9, "the tiny model did not learn the stripes"
    layer = choose_target_layer(model, SIZE, 7)
    assert layer.name == "layer2" and layer.grid == (8, 8)
    cam = class_activation_maps(model, layer, inputs, classes)
    saliency = saliency_maps(model, inputs, classes)
    return {"cam": np.array([lung_lift(m, k) for m, k in zip(cam, masks)]),
            "saliency": np.array([lung_lift(m, k) for m, k in zip(saliency, masks)])}


@pytest.mark.slow
def test_maps_of_a_model_with_its_signal_in_the_lungs_favour_the_lungs(lung_model):
    """Uniform maps have lift 1; an untrained resnet already leans a little towards the striped, darker lungs
    (about 1.2), so the control moves the stripes outside the lungs: the same training must then move the
    maps out of the lungs. The lungs are 35% of the image: a map entirely inside them has lift 2.8."""
    test = striped(16, seed=1000)
    assert masks_at(test, SIZE).mean() == pytest.approx(0.35, abs=0.01)
    inside = lung_lifts(*lung_model, test)
    # Over training and data seeds 0-5: CAM 1.30-1.68 (control 0.79-1.14), saliency 1.29-1.41 (control 1.06-1.15).
    assert np.nanmean(inside["cam"]) > 1.2
    assert np.nanmean(inside["saliency"]) > 1.15
    assert (inside["saliency"] > 1).mean() >= 0.9
    control = striped(64, seed=0, signal="outside")
    outside = lung_lifts(*train_briefly("resnet18", SIZE, control, epochs=4), striped(16, seed=1000, signal="outside"))
    assert np.nanmean(inside["cam"]) > np.nanmean(outside["cam"]) + 0.2
    assert np.nanmean(inside["saliency"]) > np.nanmean(outside["saliency"])


# ---------------------------------------------------------------------------------------------------------
# Which images are explained


def selection_case():
    """30 images in three classes (14, 12, 4), predictions wrong for some, with distinct confidences."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 14 + [1] * 12 + [2] * 4)
    names = np.array([f"case_{i:02d}.png" for i in rng.permutation(len(labels))])
    predictions = labels.copy()
    wrong = np.array([0, 3, 5, 8, 15, 16, 20, 27])
    predictions[wrong] = (labels[wrong] + 1) % 3
    probabilities = rng.dirichlet(np.ones(3), size=len(labels)).astype(np.float32)
    return names, labels, predictions, probabilities


def selected(names, labels, predictions, probabilities, per_class=5, cap=3, seed=1):
    indices, sampled = select_images(names, labels, predictions, probabilities, 3, per_class, cap, seed)
    return indices, sampled


def test_selection_is_class_balanced_then_most_confidently_wrong():
    names, labels, predictions, probabilities = selection_case()
    indices, sampled = selected(names, labels, predictions, probabilities)
    assert len(set(indices.tolist())) == len(indices), "no image twice"
    sample, extra = indices[sampled], indices[~sampled]
    assert sampled[:len(sample)].all() and not sampled[len(sample):].any(), "the sample first"
    assert np.bincount(labels[sample], minlength=3).tolist() == [5, 5, 4]  # class 2 has only 4
    wrong_outside = [i for i in np.flatnonzero(predictions != labels) if i not in set(sample.tolist())]
    assert len(wrong_outside) > 3, "the case has more misclassified images than the cap"
    confidence = {i: probabilities[i, predictions[i]] for i in wrong_outside}
    assert extra.tolist() == sorted(wrong_outside, key=lambda i: -confidence[i])[:3]
    assert all(predictions[i] != labels[i] for i in extra)
    # The sample does not depend on the predictions (every model explains the same images) nor on the cap.
    right = labels.copy()
    again, again_sampled = selected(names, labels, right, probabilities, cap=0)
    assert again_sampled.all() and again.tolist() == sample.tolist()
    # Another seed, another sample.
    other, other_sampled = selected(names, labels, predictions, probabilities, seed=2)
    assert set(other[other_sampled].tolist()) != set(sample.tolist())


def test_selection_is_deterministic_and_independent_of_order():
    names, labels, predictions, probabilities = selection_case()
    indices, sampled = selected(names, labels, predictions, probabilities)
    repeat, repeat_sampled = selected(names, labels, predictions, probabilities)
    assert np.array_equal(indices, repeat) and np.array_equal(sampled, repeat_sampled)
    order = np.random.default_rng(9).permutation(len(names))
    shuffled, shuffled_sampled = selected(names[order], labels[order], predictions[order], probabilities[order])
    assert names[order][shuffled].tolist() == names[indices].tolist()
    assert np.array_equal(shuffled_sampled, sampled)


def test_read_predictions_in_name_order_and_refuses_missing_names(tmp_path):
    classes = ["COVID-19", "Pneumonia", "Normal"]
    names = np.array(["a.png", "b.png", "c.png", "d.png"])
    labels = np.array([0, 1, 2, 2])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]], dtype=np.float32)
    path = tmp_path / "predictions.csv"
    write_evaluation(tmp_path / "m.json", path, tmp_path / "c.json", tmp_path / "roc", {}, labels, names, probabilities, classes)
    order = np.array([3, 0, 2, 1])
    read, read_probabilities = read_predictions(path, names[order], classes)
    assert read.tolist() == probabilities.argmax(axis=1)[order].tolist() == [0, 0, 2, 2]
    assert np.allclose(read_probabilities, probabilities[order])
    with pytest.raises(ValueError, match=r"no prediction for 2 test images \(first: e.png\).*dvc repro"):
        read_predictions(path, np.array(["a.png", "e.png", "f.png"]), classes)


# ---------------------------------------------------------------------------------------------------------
# The stored maps


def explanations(count: int = 5, size: int = 16, seed: int = 0) -> Explanations:
    rng = np.random.default_rng(seed)
    masks = rng.random((count, size, size)) > 0.5
    masks[-1] = False
    return Explanations(
        classes=["COVID-19", "Pneumonia", "Normal"], names=np.array([f"n{i}.png" for i in range(count)]),
        labels=rng.integers(0, 3, count), predictions=rng.integers(0, 3, count),
        probabilities=rng.dirichlet(np.ones(3), count).astype(np.float32), sampled=np.arange(count) < 3,
        images=rng.integers(0, 256, (count, size, size), dtype=np.uint8), masks=masks,
        cam=rng.random((count, size, size), dtype=np.float32), cam_true=rng.random((count, size, size), dtype=np.float32),
        saliency=rng.random((count, size, size), dtype=np.float32))


def test_explanations_roundtrip_with_maps_in_255_steps(tmp_path):
    original = explanations()
    original.save(tmp_path / "maps.npz")
    loaded = Explanations.load(tmp_path / "maps.npz")
    assert len(loaded) == len(original) and loaded.classes == original.classes
    for field in dataclasses.fields(Explanations):
        before, after = getattr(original, field.name), getattr(loaded, field.name)
        if field.name in ("cam", "cam_true", "saliency"):
            assert after.dtype == np.float32 and after.shape == before.shape
            assert np.abs(after - before).max() <= 0.5 / 255 + 1e-6
            steps = after * 255
            assert np.allclose(steps, np.round(steps), atol=1e-4)
        elif field.name != "classes":
            assert np.array_equal(after, before) and after.dtype == before.dtype, field.name


def test_explanations_file_is_byte_identical_for_the_same_data(tmp_path):
    explanations(seed=4).save(tmp_path / "first.npz")
    explanations(seed=4).save(tmp_path / "second.npz")
    assert (tmp_path / "first.npz").read_bytes() == (tmp_path / "second.npz").read_bytes()
    explanations(seed=5).save(tmp_path / "third.npz")
    assert (tmp_path / "first.npz").read_bytes() != (tmp_path / "third.npz").read_bytes()


# ---------------------------------------------------------------------------------------------------------
# The whole explanation of a split


def test_explain_split_end_to_end(lung_model):
    model, mean, std = lung_model
    test = striped(12, seed=2000)  # 6 per class, stored at 80 px, explained at 64
    params = ExplainParams(seed=3, method="gradcam", saliency="smoothgrad", smoothgrad_samples=3, smoothgrad_noise=0.1,
                           images_per_class=3, max_misclassified=2, min_grid=7, road_percentiles=[20, 60], batch_size=4)
    labels = test.labels
    sample, _ = select_images(test.names, labels, labels, np.zeros((12, 2)), 2, 3, 0, params.seed)
    outside = [i for i in range(12) if i not in set(sample.tolist())]
    # Wrong predictions: one in the sample, three outside it (the two most confident of which get added).
    wrong = [sample[0], *outside[:3]]
    predictions = labels.copy()
    predictions[wrong] = 1 - labels[wrong]
    probabilities = np.tile(np.array([[0.5, 0.5]], dtype=np.float32), (12, 1))
    for confidence, i in zip((0.9, 0.6, 0.8, 0.7), wrong):
        probabilities[i, predictions[i]], probabilities[i, 1 - predictions[i]] = confidence, 1 - confidence
    no_mask = sample[1]
    masks = np.array(test.masks)
    masks[no_mask] = False
    test = dataclasses.replace(test, masks=masks)
    meta = {"classes": ["COVID-19", "Normal"], "image_size": SIZE, "mean": list(mean), "std": list(std),
            "model": "resnet18", "dataset": "full"}

    explained, metrics = explain_split(model, meta, test, predictions, probabilities, params, torch.device("cpu"),
                                       resamples=200, confidence=0.95, progress=False)

    expected_order = [*sample.tolist(), outside[1], outside[2]]  # confidences 0.8 and 0.7; 0.6 is cut
    assert explained.names.tolist() == test.names[expected_order].tolist()
    assert explained.sampled.tolist() == [True] * 6 + [False] * 2
    assert explained.images.shape == explained.masks.shape == explained.cam.shape == (8, SIZE, SIZE)
    assert explained.has_mask.tolist() == [i != no_mask for i in expected_order]
    assert not explained.masks[expected_order.index(no_mask)].any()
    correct = explained.labels == explained.predictions
    assert all(np.array_equal(explained.cam[i], explained.cam_true[i]) for i in np.flatnonzero(correct))
    assert not any(np.array_equal(explained.cam[i], explained.cam_true[i]) for i in np.flatnonzero(~correct))

    layer = choose_target_layer(model, SIZE, 7)
    assert metrics["layer"] == layer.name and metrics["grid"] == min(layer.grid) == 8 and metrics["method"] == "gradcam"
    assert (metrics["images"], metrics["sampled"], metrics["misclassified"], metrics["without_mask"]) == (8, 6, 3, 1)
    text = json.dumps(metrics, allow_nan=False)  # JSON has no NaN: figures with nothing to average are null
    assert json.loads(text) == metrics
    for key in [k.removesuffix("_ci_low") for k in metrics if k.endswith("_ci_low")]:
        low, mean_value, high = metrics[f"{key}_ci_low"], metrics[key], metrics[f"{key}_ci_high"]
        if mean_value is not None:
            assert low <= mean_value <= high, key
    for key in ("cam_lung_energy", "cam_lung_lift", "cam_pointing", "saliency_lung_energy", "saliency_lung_lift", "road"):
        assert metrics[key] is not None, key
    for zone in ZONES:
        assert f"zone_{zone}_covid19" in metrics and f"involved_{zone}_normal" in metrics
    # The zone shares' denominators: the sampled images with a lung mask, by predicted class.
    sampled_predictions = explained.predictions[explained.sampled & explained.has_mask]
    assert [metrics[f"predicted_{slug(name)}"] for name in explained.classes] == \
        [int((sampled_predictions == c).sum()) for c in range(len(explained.classes))]

    # The image without a mask is left out of every mask-based figure: dropping it changes none of them.
    keep = np.array([i != no_mask for i in expected_order])
    subset = Explanations(**{f.name: getattr(explained, f.name) if f.name == "classes" else getattr(explained, f.name)[keep]
                             for f in dataclasses.fields(Explanations)})
    road = np.arange(8, dtype=np.float32)
    full = explanation_metrics(explained, road, resamples=200, confidence=0.95, seed=3)
    without = explanation_metrics(subset, road[keep], resamples=200, confidence=0.95, seed=3)
    mask_based = [k for k in full if not k.startswith("road")]
    assert {k: full[k] for k in mask_based} == {k: without[k] for k in mask_based}
    # ROAD needs no mask; like the headline figures it averages over the class-balanced sample only.
    assert full["road"] == pytest.approx(road[explained.sampled].mean())
    assert without["road"] == pytest.approx(road[keep & explained.sampled].mean())
    # The misclassified images have figures of their own: the map of the wrong answer and of the right one.
    wrong = np.flatnonzero((explained.predictions != explained.labels) & explained.has_mask)
    assert full["misclassified_true_cam_lung_energy"] == pytest.approx(
        np.mean([lung_energy_fraction(explained.cam_true[i], explained.masks[i]) for i in wrong]), abs=1e-6)


def test_stray_mask_specks_are_in_no_zone_and_do_not_dilute_the_zones():
    speck = np.zeros((H, W), dtype=bool)
    speck[0, 0] = True  # a third, tiny region: not a lung
    heatmap = np.where(LUNGS | speck, 1.0, 0.0)
    shares = zone_shares(heatmap, LUNGS | speck)
    assert shares["upper"] + shares["middle"] + shares["lower"] == pytest.approx(1.0)
    assert shares["central"] + shares["peripheral"] == pytest.approx(1.0)
    assert all(value == 1.0 for value in zone_involvement(heatmap, LUNGS | speck).values())


def test_a_lung_too_small_to_divide_leaves_its_empty_zones_undecided():
    flat = box((10, 12), (4, 16)) | box((10, 12), (22, 36))  # two lungs of 2 rows: no lower third
    involved = zone_involvement(np.ones((H, W)), flat)
    assert np.isnan(involved["lower"]) and involved["upper"] == 1.0


def test_lift_of_an_empty_mask_is_undefined():
    assert np.isnan(lung_lift(np.ones((H, W)), np.zeros((H, W), dtype=bool)))


def test_fast_road_is_the_librarys_road_bit_for_bit():
    """cxr.explain.road assembles the imputation's system faster; the system, the imputed pixels and the scores
    must be exactly pytorch-grad-cam's."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights
    from pytorch_grad_cam.metrics.road import ROADCombined as LibraryROAD
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from cxr.explain.road import FastNoisyLinearImputer, ROADCombined, sparse_system

    rng = np.random.default_rng(0)
    image = rng.random((3, 24, 20)).astype(np.float32)
    mask = (rng.random((24, 20)) > 0.4).astype(np.float32)
    mask[0, :] = 0  # removed pixels on the border too, where neighbours fall off the image
    expected_a, expected_b = NoisyLinearImputer.setup_sparse_system(mask, image, neighbors_weights)
    system, b = sparse_system(mask, image, neighbors_weights)
    assert np.array_equal(system.toarray(), expected_a.toarray()) and np.array_equal(b, expected_b)
    torch.manual_seed(3)
    expected = NoisyLinearImputer()(torch.from_numpy(image), torch.from_numpy(mask))
    torch.manual_seed(3)
    assert torch.equal(FastNoisyLinearImputer()(torch.from_numpy(image), torch.from_numpy(mask)), expected)

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3)).eval()
    inputs = torch.from_numpy(rng.random((2, 3, 24, 20)).astype(np.float32))
    cams = rng.random((2, 24, 20)).astype(np.float32)
    targets = [ClassifierOutputSoftmaxTarget(0), ClassifierOutputSoftmaxTarget(2)]
    scores = []
    for metric in (LibraryROAD(percentiles=[30, 70]), ROADCombined([30, 70])):
        torch.manual_seed(5)
        with torch.no_grad():
            scores.append(metric(inputs, cams, targets, model))
    assert np.array_equal(scores[0], scores[1])
