"""The shortcut audit of a source (cxr.data.audit): flags on properties no diagnosis explains, and a
metadata-only baseline that says how well the labels can be read without looking at a lung.

Stand-ins are tiny: each differs between its classes in one property only (exact size, lung-mask
provenance, a corner marker), with the same films otherwise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.cli import main
from cxr.data.audit import CORNERS, STATISTICS, audit_metrics, image_statistics, metadata_baseline
from cxr.data.index import COLUMNS, build_index
from cxr.data.params import SourceParams
from cxr.synthetic.generator import write_dataset
from tests.conftest import index_source, tiny_params, write_params
from tests.standins import CLASSES, INDEX, film, lungs, png, write_folder

PER_CLASS = 12
METRICS = {"baseline_accuracy", "baseline_accuracy_ci_low", "baseline_accuracy_ci_high", "baseline_macro_f1",
           "baseline_macro_f1_ci_low", "baseline_macro_f1_ci_high", "chance_accuracy", "chance_macro_f1", "test_images",
           "shortcut_flags"}


def scaled(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One 64-px film and its lungs, brought to `size` px: the same content at any size."""
    picture = Image.fromarray(film(seed)).resize((size, size), Image.Resampling.BILINEAR)
    mask = Image.fromarray(lungs(seed).astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(picture), np.asarray(mask) > 0


def stand_in(film_size: dict[str, int], mask_size: dict[str, int] | None = None) -> dict[str, bytes]:
    """Folders of the classes in film_size whose films (and masks, if given) differ in their sizes only."""
    tree = {}
    for k, label in enumerate(film_size):
        for i in range(1, PER_CLASS + 1):
            image, mask = scaled(7000 + 100 * k + i, film_size[label])
            folder = f"{label}/images/" if mask_size else f"{label}/"
            tree[f"{folder}img-{i}.png"] = png(image)
            if mask_size:
                stored = Image.fromarray(mask.astype(np.uint8) * 255).resize((mask_size[label],) * 2, Image.Resampling.NEAREST)
                tree[f"{label}/masks/img-{i}.png"] = png(np.asarray(stored))
    return tree


def inspected(folder: Path, capsys) -> tuple[dict, str]:
    """(the JSON report, the text report) of `cxr inspect folder`."""
    assert main(["inspect", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["sources"][0]
    assert main(["inspect", str(folder)]) == 0
    return report, capsys.readouterr().out


def well_above_chance(baseline: dict) -> bool:
    return baseline["accuracy"] >= 0.9 and baseline["accuracy_ci_low"] > baseline["chance_accuracy"] + 0.1


# Two classes: each differs from the rest in the one property, so a baseline that reads it scores 1.0.
def test_a_class_of_its_own_native_size_is_flagged_and_read_by_the_baseline(workdir, capsys):
    # 299 and 256 px share a half-octave size bucket: only the exact size tells them apart.
    report, text = inspected(write_folder(stand_in({"COVID-19": 299, "Normal": 256}), workdir / "sizes"), capsys)
    flag = next(flag for flag in report["shortcut_flags"] if flag.startswith("COVID-19: native size"))
    assert "'299x299'" in flag and f"SHORTCUT? {flag}" in text
    assert not [flag for flag in report["shortcut_flags"] if "image size" in flag]
    assert report["native_sizes"]["COVID-19"] == {"299x299": PER_CLASS}
    assert well_above_chance(report["metadata_baseline"])
    assert "metadata-only baseline: accuracy 1.00" in text


def test_a_class_whose_masks_were_resized_is_flagged_and_read_by_the_baseline(workdir, capsys):
    # Every film is 299 px; COVID-19's masks came at 256 px, Normal's at the film's size.
    tree = stand_in({"COVID-19": 299, "Normal": 299}, {"COVID-19": 256, "Normal": 299})
    report, text = inspected(write_folder(tree, workdir / "masks"), capsys)
    assert report["lung_masks"] == {"COVID-19": {"resized": PER_CLASS}, "Pneumonia": {}, "Normal": {"file": PER_CLASS}}
    flag = next(flag for flag in report["shortcut_flags"] if flag.startswith("COVID-19: lung-mask provenance"))
    assert "'resized'" in flag and f"SHORTCUT? {flag}" in text
    assert well_above_chance(report["metadata_baseline"])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The default synthetic source, small, and its twin whose every film carries its class's corner marker."""
    out = tmp_path_factory.mktemp("audit")
    write_dataset(out / "synthetic", seed=11, images_per_class=40, image_size=64, shortcut=1.0,
                  shortcut_dir=out / "synthetic-shortcut", follow_up_fraction=0.1, duplicate_fraction=0.05,
                  progress=False)
    return out / "synthetic", out / "synthetic-shortcut"


def audit_of(path: Path) -> dict:
    return build_index("synthetic", SourceParams(path=str(path), patient_id_pattern=r"^(p\d+)_"), INDEX, CLASSES).report


def test_synthetic_default_is_unflagged_and_near_chance(synthetic):
    report = audit_of(synthetic[0])
    baseline = report["metadata_baseline"]
    assert report["shortcut_flags"] == []
    # Near chance: its interval does not clear chance (with a few test films it can fall below it, by luck).
    assert baseline["accuracy_ci_low"] <= baseline["chance_accuracy"] and baseline["accuracy"] < 0.6
    assert baseline["test_images"] == sum(baseline["test_counts"].values()) > 10
    # The intensity statistics come from outside the lungs: the synthetic lesions are inside them.
    assert {region for regions in report["image_statistics"].values() for region in regions} == {"outside lungs"}


def test_marked_twin_is_read_by_the_baseline_and_its_corners_flagged(synthetic):
    report = audit_of(synthetic[1])
    assert report["metadata_baseline"]["accuracy"] >= 0.95
    assert well_above_chance(report["metadata_baseline"])
    corners = [flag for flag in report["shortcut_flags"] if "image statistics (outside lungs)" in flag]
    assert any(flag.startswith("COVID-19") and "top-left corner" in flag for flag in corners)


def test_statistics_leave_out_the_lungs():
    image, mask = scaled(7100, 128)
    outside = image_statistics(image, mask)
    assert outside["stats_region"] == "outside lungs"
    # Whatever the lungs show, nothing of it reaches the statistics.
    diseased = image_statistics(np.where(mask, 255, image).astype(np.uint8), mask)
    assert diseased == outside
    whole = image_statistics(image, None)
    assert whole["stats_region"] == "whole film" and whole["intensity_mean"] != outside["intensity_mean"]
    framed = np.full((128, 128), 120, np.uint8)
    framed[:16] = 0  # a black band: 1/8 of the film
    assert image_statistics(framed, None)["black_border"] == 0.125
    assert set(outside) <= set(COLUMNS) and {*STATISTICS, *CORNERS} <= set(outside)


def test_index_stage_writes_flat_audit_metrics(tiny_raw, workdir):
    shutil.copytree(tiny_raw, workdir / "data" / "raw" / "synthetic")
    write_params(workdir, tiny_params())
    index_source(workdir, "synthetic")
    metrics = json.loads((workdir / "metrics" / "data" / "synthetic.json").read_text())
    assert set(metrics) == METRICS
    assert all(isinstance(metrics[key], float) for key in METRICS - {"test_images", "shortcut_flags"})
    assert metrics["test_images"] > 0 and isinstance(metrics["shortcut_flags"], int)


def test_baseline_without_two_classes_to_train_on_is_null(synthetic):
    rows = [row for row in build_index("one", SourceParams(path=str(synthetic[0])), INDEX, CLASSES).rows
            if row["status"] == "ok" and row["label"] == "Normal"]
    baseline = metadata_baseline(rows, CLASSES, seed=1)
    assert baseline["not_computed"] and baseline["accuracy"] is None
    metrics = audit_metrics({"metadata_baseline": baseline, "shortcut_flags": []})
    assert json.loads(json.dumps(metrics, allow_nan=False))["baseline_accuracy"] is None
