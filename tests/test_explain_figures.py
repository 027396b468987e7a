"""The explanation figures and the report's explanation tables, from small made-up explanations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cxr.explain.figures import (
    panel_rows,
    shared_image,
    write_class_panels,
    write_cross_model_figure,
    write_zones_figure,
)
from cxr.explain.results import Explanations, explanation_file
from cxr.anatomy.lungs import ZONES
from cxr.metrics.outputs import EvaluationFiles
from cxr.report.summary import explanations_table, summary_table, zone_class, zones_table
from tests.conftest import evaluation_files, run_stage, tiny_params, write_params

CLASSES = ["COVID-19", "Pneumonia", "Normal"]
SIZE = 48
MODELS = ["resnet18", "densenet161"]
DATASETS = ["full", "lungs"]


def make_explanations(names: list[str], labels: list[int], predictions: list[int], sampled: list[bool],
                      *, seed: int = 0, has_mask: list[bool] | None = None) -> Explanations:
    """Random films with a rectangular 'lung' mask and smooth random maps (saliency speckled, as gradients are)."""
    rng = np.random.default_rng(seed)
    n = len(names)
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    masks[:, 8:40, 6:42] = True
    has_mask = np.ones(n, dtype=bool) if has_mask is None else np.array(has_mask)
    masks[~has_mask] = False
    coarse = rng.random((2, n, 6, 6)).astype(np.float32)
    cams = np.kron(coarse, np.ones((SIZE // 6, SIZE // 6), dtype=np.float32))
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), n).astype(np.float32)
    return Explanations(
        classes=list(CLASSES), names=np.array(names), labels=np.array(labels), predictions=np.array(predictions),
        probabilities=probabilities, sampled=np.array(sampled), images=rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8),
        masks=masks, cam=cams[0], cam_true=cams[1],
        saliency=(rng.random((n, SIZE, SIZE)) ** 4).astype(np.float32))


def png(path: Path) -> Image.Image:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image


def colour_blocks(path: Path) -> list[int]:
    """Per band of rows that are largely strongly coloured and at least a tile high, how many separate blocks of
    columns that are coloured in good part within it: the heat-map tiles of each row of a figure. Grey text, white
    outlines and the paper are not coloured; the odd pixel that the palette's dithering tints, and red
    titles, are too few to count."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    coloured = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 40

    def runs(flags: np.ndarray) -> list[tuple[int, int]]:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
        return list(zip(edges[::2], edges[1::2]))

    bands = [(top, bottom) for top, bottom in runs(coloured.sum(axis=1) >= 40) if bottom - top >= 40]
    return [len(runs(coloured[top:bottom].mean(axis=0) > 0.15)) for top, bottom in bands]


@pytest.fixture
def explained() -> Explanations:
    # COVID-19: an extra misclassified image listed before the four sampled ones (the first and last of them
    # misclassified, one without a mask); Pneumonia: a sampled image and a misclassified extra; Normal: none.
    names = [f"covid/{i}.png" for i in range(5)] + ["pneumonia/0.png", "pneumonia/1.png"]
    labels = [0, 0, 0, 0, 0, 1, 1]
    predictions = [0, 1, 0, 0, 2, 1, 0]
    sampled = [False, True, True, True, True, True, False]
    return make_explanations(names, labels, predictions, sampled, has_mask=[True, True, False, True, True, True, True])


def test_panel_rows_show_sampled_images_first_then_misclassified_ones(explained):
    assert panel_rows(explained, 0, max_rows=4).tolist() == [1, 2, 3, 4]
    assert panel_rows(explained, 0, max_rows=10).tolist() == [1, 2, 3, 4, 0]
    assert panel_rows(explained, 1, max_rows=4).tolist() == [5, 6]
    assert panel_rows(explained, 2, max_rows=4).tolist() == []


def test_one_compact_panel_per_class_with_explained_images(explained, tmp_path):
    written = write_class_panels(explained, tmp_path, title="resnet18 on full: gradcam at layer3 (7x7)")
    # Normal has no explained image: no panel for it.
    assert written == [tmp_path / "panel_covid19.png", tmp_path / "panel_pneumonia.png"]
    assert written == [explanation_file(tmp_path, name) for name in ("COVID-19", "Pneumonia")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["panel_covid19.png", "panel_pneumonia.png"]
    four_rows, two_rows = png(written[0]), png(written[1])
    assert four_rows.width == two_rows.width and 300 < four_rows.width < 1000
    assert two_rows.height < four_rows.height < 1200
    assert all(path.stat().st_size < 300_000 for path in written)
    # Three heat-map tiles on a misclassified row (CAMs of both classes, saliency), two on a correct one.
    assert colour_blocks(written[0]) == [3, 2, 2, 3]
    assert colour_blocks(written[1]) == [2, 3]
    shorter = write_class_panels(explained, tmp_path / "fewer", title="t", max_rows=1)
    assert png(shorter[0]).height < two_rows.height


def test_panels_are_byte_identical_for_the_same_inputs(explained, tmp_path):
    first = write_class_panels(explained, tmp_path / "a", title="same")
    second = write_class_panels(explained, tmp_path / "b", title="same")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def runs_sharing_a_sample() -> dict[tuple[str, str], Explanations]:
    """Four runs explaining the same sampled test images, each class predicted right (titles stay black)."""
    names = ["c/1.png", "c/2.png", "p/1.png", "p/2.png", "n/1.png"]
    labels = [0, 0, 1, 1, 2]
    return {(dataset, model): make_explanations(names, labels, labels, [True] * 5, seed=seed)
            for seed, (dataset, model) in enumerate((d, m) for d in DATASETS for m in MODELS)}


def test_cross_model_figure_shows_the_same_image_for_every_run(tmp_path):
    runs = runs_sharing_a_sample()
    path = tmp_path / "explanations.png"
    write_cross_model_figure(runs, DATASETS, MODELS, path)
    image = png(path)
    assert image.width > image.height > 300
    assert path.stat().st_size < 300_000
    assert colour_blocks(path) == [4, 4, 4]
    assert shared_image(list(runs.values()), "COVID-19") == "c/1.png"


def test_cross_model_figure_leaves_cells_blank_where_a_run_lacks_the_image(tmp_path):
    runs = runs_sharing_a_sample()
    # One run never explained c/1.png (its sample differs), another is missing entirely.
    kept = np.flatnonzero(runs["lungs", "resnet18"].names != "c/1.png")
    lacking = runs["lungs", "resnet18"]
    runs["lungs", "resnet18"] = make_explanations(lacking.names[kept].tolist(), lacking.labels[kept].tolist(),
                                                  lacking.predictions[kept].tolist(), [True] * len(kept), seed=9)
    assert shared_image(list(runs.values()), "COVID-19") == "c/2.png"  # c/2 is in every run: it replaces c/1
    del runs["full", "densenet161"]
    path = tmp_path / "explanations.png"
    write_cross_model_figure(runs, DATASETS, MODELS, path)
    assert colour_blocks(path) == [3, 3, 3]

    # No image of the class in every run: the one most runs explain, the first run's order breaking ties.
    only_first = make_explanations(["c/9.png", "p/1.png"], [0, 1], [0, 1], [True, True])
    only_second = make_explanations(["c/8.png", "c/9.png", "p/1.png"], [0, 0, 1], [0, 0, 1], [True, True, True])
    without = make_explanations(["p/1.png"], [1], [1], [True])
    assert shared_image([only_first, only_second, without], "COVID-19") == "c/9.png"
    assert shared_image([without, only_second], "COVID-19") == "c/8.png"
    assert shared_image([without], "COVID-19") is None
    fallback = tmp_path / "fallback.png"
    write_cross_model_figure({("full", "resnet18"): only_second, ("lungs", "resnet18"): without}, DATASETS,
                             ["resnet18"], fallback)
    # COVID-19 row: only its own run's cell; Pneumonia row: both; no Normal image anywhere: no row.
    assert colour_blocks(fallback) == [1, 2]


def test_cross_model_figure_is_byte_identical_for_the_same_inputs(tmp_path):
    write_cross_model_figure(runs_sharing_a_sample(), DATASETS, MODELS, tmp_path / "a.png")
    write_cross_model_figure(runs_sharing_a_sample(), DATASETS, MODELS, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def zone_metrics(value: float | None, class_slug: str = "covid19") -> dict:
    return {f"involved_{zone}_{class_slug}": value for zone in ZONES}


def pixels_near(path: Path, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(colour)).max(axis=-1) <= tolerance).sum())


BLUE, ORANGE, REFERENCE_GREY = (31, 119, 180), (255, 127, 14), (51, 51, 51)


def test_zones_figure_draws_runs_and_reference_and_skips_missing_values(tmp_path):
    zones = {("full", "resnet18"): zone_metrics(0.6), ("full", "densenet161"): zone_metrics(None)}
    path = tmp_path / "zones.png"
    write_zones_figure(zones, ["full"], MODELS, "covid19", path, class_name="COVID-19")
    image = png(path)
    assert image.width > image.height > 200 and path.stat().st_size < 300_000
    # resnet18's bars (tab10 blue) fill far more than a legend patch; densenet161 (orange, all None) only its patch.
    assert pixels_near(path, BLUE) > 5 * pixels_near(path, ORANGE)
    assert pixels_near(path, ORANGE) > 0
    with_reference = pixels_near(path, REFERENCE_GREY, tolerance=2)

    # A class the reference does not describe gets no reference bars.
    other = tmp_path / "normal.png"
    write_zones_figure({key: zone_metrics(0.6, "normal") for key in zones}, ["full"], MODELS, "normal", other)
    assert with_reference > 5 * max(pixels_near(other, REFERENCE_GREY, tolerance=2), 100)

    again = tmp_path / "again.png"
    write_zones_figure(zones, ["full"], MODELS, "covid19", again, class_name="COVID-19")
    assert again.read_bytes() == path.read_bytes()


def explain_metrics(**overrides) -> dict:
    metrics = {"layer": "layer3", "grid": 7, "method": "gradcam", "images": 36, "sampled": 24, "without_mask": 2}
    for key, (mean, low, high) in {"cam_lung_energy": (0.412, 0.35, 0.47), "cam_lung_lift": (1.61, 1.4, 1.9),
                                   "cam_pointing": (0.611, 0.472, 0.778), "saliency_lung_energy": (0.387, 0.37, 0.403),
                                   "road": (0.143, 0.092, 0.201)}.items():
        metrics |= {key: mean, f"{key}_ci_low": low, f"{key}_ci_high": high}
    metrics |= {f"involved_{zone}_covid19": value for zone, value in zip(ZONES, (0.1, 0.4, 0.7, 0.25, 0.9))}
    return metrics | overrides


def test_explanations_table_rows_with_intervals():
    no_mask = explain_metrics(cam_lung_energy=None, cam_lung_energy_ci_low=None, cam_lung_energy_ci_high=None,
                              images=12, sampled=9, without_mask=12)
    table = explanations_table([("full", "resnet18", explain_metrics()), ("lungs", "resnet18", no_mask)], "95%")
    lines = table.splitlines()
    assert "1.0 is what a uniform map scores" in lines[0]
    assert lines[2] == ("| Dataset | Model | CAM layer (grid) | CAM lung energy [95% CI] | Lift [95% CI] "
                        "| Pointing game [95% CI] | Saliency lung energy [95% CI] | ROAD [95% CI] | Sample of (explained; without mask) |")
    assert lines[4] == ("| full | resnet18 | layer3 (7x7) | 0.412 [0.350, 0.470] | 1.610 [1.400, 1.900] "
                        "| 0.611 [0.472, 0.778] | 0.387 [0.370, 0.403] | 0.143 [0.092, 0.201] | 24 (36; 2) |")
    assert lines[5].startswith("| lungs | resnet18 | layer3 (7x7) | n/a | 1.610 [1.400, 1.900] |")
    assert lines[5].endswith("| 9 (12; 12) |")
    assert len(lines) == 6


def test_zones_table_has_each_run_and_the_reference_row():
    runs = [("full", "resnet18", explain_metrics(predicted_covid19=4)),
            ("lungs", "resnet18", explain_metrics(involved_upper_covid19=None))]
    lines = zones_table(runs, "COVID-19").splitlines()
    assert "predicted as COVID-19" in lines[0] and "Abougazia et al. 2021" in lines[0]
    assert lines[2] == "| Dataset | Model | Images | Upper | Middle | Lower | Central | Peripheral |"
    # The shares' denominator beside them (n/a for results written before the count was).
    assert lines[4:] == ["| full | resnet18 | 4 | 0.100 | 0.400 | 0.700 | 0.250 | 0.900 |",
                         "| lungs | resnet18 | n/a | n/a | 0.400 | 0.700 | 0.250 | 0.900 |",
                         "| Abougazia et al. 2021 | COVID-19 patients | - | 0.11 | 0.48 | 0.87 | - | 0.70 |"]


def test_zone_class_is_the_covid_class():
    assert zone_class(["Normal", "COVID-19", "Pneumonia"]) == "COVID-19"
    assert zone_class(["covid", "Normal"]) == "covid"
    assert zone_class(["Normal", "Pneumonia"]) is None


def classify_metrics() -> dict:
    return {"accuracy": 0.849, "accuracy_ci_low": 0.774, "accuracy_ci_high": 0.914, "macro_f1": 0.847,
            "macro_f1_ci_low": 0.767, "macro_f1_ci_high": 0.913, "roc_auc_macro": None, "ece": 0.098, "n_test": 93}


def test_summary_table_keeps_its_format():
    assert summary_table([("full", "resnet18", classify_metrics())], "90%").splitlines() == [
        "| Dataset | Model | Accuracy [90% CI] | Macro-F1 [90% CI] | ROC-AUC (macro) | ECE | Test images |",
        "|---|---|---|---|---|---|---|",
        "| full | resnet18 | 0.849 [0.774, 0.914] | 0.847 [0.767, 0.913] | n/a | 0.098 | 93 |"]


# The folders and files dvc.yaml's report stage is given, relative to the test's folder (its working directory).
REPORT_INPUTS = {"classify": "metrics/classify", "cross": "metrics/cross", "explain-metrics": "metrics/explain",
                 "segment-metrics": "metrics/segment", "audits": "metrics/data", "sources": "reports/data/sources",
                 "views": "reports/data/views", "evaluations": "reports/evaluate", "cross-evaluations": "reports/cross",
                 "train-logs": "reports/train", "explanations": "reports/explain", "segment-reports": "reports/segment"}
REPORT_OUTPUTS = {"summary": "reports/summary.md", "headline": "metrics/headline.json", "page": "reports/index.html",
                  "cards": "reports/cards", "comparison-figure": "reports/comparison.png",
                  "explanations-figure": "reports/explanations.png", "zones-figure": "reports/zones.png"}
SUMMARY, PAGE, CARDS = (Path(REPORT_OUTPUTS[option]) for option in ("summary", "page", "cards"))
FIGURES = [Path(REPORT_OUTPUTS[f"{name}-figure"]) for name in ("comparison", "explanations", "zones")]


def run_report() -> None:
    run_stage("report", *(word for option, path in {**REPORT_INPUTS, **REPORT_OUTPUTS}.items() for word in (f"--{option}", path)))


def evaluated(trained_on: str, model: str, tested_on: str | None = None) -> EvaluationFiles:
    """The files the evaluate stage (or the crosstest on `tested_on`) writes for `model`."""
    return evaluation_files(Path(), model, trained_on, None if tested_on == trained_on else tested_on)


def explain_metrics_path(dataset: str, model: str) -> Path:
    return Path(REPORT_INPUTS["explain-metrics"]) / dataset / f"{model}.json"


def explanation_folder(dataset: str, model: str) -> Path:
    return Path(REPORT_INPUTS["explanations"]) / dataset / model


def write_report_inputs(params: dict) -> None:
    """Every file the report stage reads, as the evaluate, crosstest and explain stages would leave them."""
    runs = runs_sharing_a_sample()
    for dataset in params["datasets"]:
        for model in params["models"]:
            for path, data in ((evaluated(dataset, model).metrics, classify_metrics()),
                               (explain_metrics_path(dataset, model), explain_metrics())):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(data))
            explanation_folder(dataset, model).mkdir(parents=True)
            runs[dataset, model].save(explanation_file(explanation_folder(dataset, model)))
    classes = params["classes"]
    tested = [(d, d, m) for d in params["datasets"] for m in params["models"]]
    tested += [(t["trained_on"], t["tested_on"], m) for t in params["cross_tests"] for m in params["models"]]
    for trained_on, tested_on, model in tested:
        for path, data in ((evaluated(trained_on, model, tested_on).metrics, classify_metrics()),
                           (evaluated(trained_on, model, tested_on).confusion,
                            [{"actual": c, "predicted": p} for c in classes for p in classes])):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
    for dataset in params["datasets"]:
        counts = {split: {c: 3 for c in classes} for split in ("train", "val", "test")}
        view = {"source": "synthetic", "view": dataset, "image_size": 48, "images_kept": 27, "images_skipped": 0,
                "counts": counts}
        view_report = Path(REPORT_INPUTS["views"]) / f"{dataset}.json"
        view_report.parent.mkdir(parents=True, exist_ok=True)
        view_report.write_text(json.dumps(view))
        for model in params["models"]:
            train_log = Path(REPORT_INPUTS["train-logs"]) / dataset / model  # dvclive's folder
            train_log.mkdir(parents=True, exist_ok=True)
            (train_log / "metrics.json").write_text(json.dumps({"best": {"epoch": 1, "val_macro_f1": 0.5}}))
            md5 = hashlib.md5(f"{dataset}/{model} weights".encode()).hexdigest()
            evaluated(dataset, model).checkpoint_record.parent.mkdir(parents=True, exist_ok=True)
            evaluated(dataset, model).checkpoint_record.write_text(json.dumps({"md5": md5}))
            curves = train_log / "plots" / "metrics"
            for name in ("train/loss", "val/loss", "val/macro_f1"):
                (curves / f"{name}.tsv").parent.mkdir(parents=True, exist_ok=True)
                (curves / f"{name}.tsv").write_text("step\tvalue\n0\t0.9\n1\t0.5\n")
            roc = evaluated(dataset, model).roc
            roc.mkdir(parents=True, exist_ok=True)
            (roc / "covid19.json").write_text(json.dumps([{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}]))
    probe = params["probe"]
    for model in probe["models"]:
        for dataset in probe["datasets"]:
            for path, data in ((evaluated(dataset, model).metrics, classify_metrics()),
                               (explain_metrics_path(dataset, model), explain_metrics())):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(data))
        for test in probe["cross_tests"]:
            path = evaluated(test["trained_on"], model, test["tested_on"]).metrics
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(classify_metrics()))
    audit = {"baseline_accuracy": 0.35, "baseline_accuracy_ci_low": 0.25, "baseline_accuracy_ci_high": 0.45,
             "baseline_macro_f1": 0.34, "baseline_macro_f1_ci_low": 0.24, "baseline_macro_f1_ci_high": 0.44,
             "chance_accuracy": 0.33, "chance_macro_f1": 0.17, "test_images": 93, "shortcut_flags": 0}
    for source in {params["dataset"][name]["source"] for name in [*params["datasets"], *probe["datasets"]]}:
        (Path(REPORT_INPUTS["audits"]) / f"{source}.json").parent.mkdir(parents=True, exist_ok=True)
        (Path(REPORT_INPUTS["audits"]) / f"{source}.json").write_text(json.dumps(audit))
    for source, entry in params["source"].items():  # the index's data report: the report names path and layout
        (Path(REPORT_INPUTS["sources"]) / f"{source}.json").parent.mkdir(parents=True, exist_ok=True)
        (Path(REPORT_INPUTS["sources"]) / f"{source}.json").write_text(json.dumps({"path": entry["path"], "layout": "class-folders"}))
    segmentation = {"dice": 0.95, "dice_ci_low": 0.94, "dice_ci_high": 0.96, "iou": 0.9, "iou_ci_low": 0.89,
                    "iou_ci_high": 0.91, "mask_map50": 0.995, "mask_map50_95": 0.8, "plausible": 1.0, "empty": 0,
                    "more_than_two": 1, "touches_border": 2, "images": 10, "images_with_truth": 9}
    for dataset in params["segment"]["evaluate_on"]:
        segment_metrics = Path(REPORT_INPUTS["segment-metrics"])  # the segment_evaluate and segment_explain stages'
        for path, data in ((segment_metrics / "evaluate" / f"{dataset}.json", segmentation),
                           (segment_metrics / "explain" / f"{dataset}.json", {"attention_lung_lift": 2.5, "uncertainty_on_border": 0.6})):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
        for figure in (Path(REPORT_INPUTS["segment-reports"]) / dataset / name for name in ("gallery.png", "zones.png")):
            figure.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8)).save(figure)


def test_report_stage_writes_the_explanation_tables_and_figures(workdir):
    params = tiny_params(models=MODELS, datasets=DATASETS)
    write_params(workdir, params)
    write_report_inputs(params)
    run_report()
    summary = SUMMARY.read_text()
    assert summary.count("| layer3 (7x7) | 0.412 [0.350, 0.470] |") == 4
    assert "| Abougazia et al. 2021 | COVID-19 patients | - | 0.11 | 0.48 | 0.87 | - | 0.70 |" in summary
    assert summary.count("| 0.100 | 0.400 | 0.700 | 0.250 | 0.900 |") == 4
    segmented = "| 0.950 [0.940, 0.960] | 0.900 [0.890, 0.910] | 0.995 | 0.800 | 1.000 | 0 / 1 / 2 | 2.500 | 0.600 | 10 (9) |"
    assert all(f"| {dataset} {segmented}" in summary for dataset in DATASETS)
    cascade = [test for test in params["cross_tests"] if test["tested_on"] in params["segmented_dataset"]]
    assert cascade and summary.count("| +0.000 | +0.000 |") == len(cascade) * len(MODELS)  # same metrics: no cost
    assert summary.count("| resnet18 | 0.849 → 0.849 |") == 1  # the shortcut experiment's row
    # The shortcut audit: a row per source, and the outside probe beside the same model's full and lungs runs.
    assert "| synthetic | 0.350 [0.250, 0.450] | 0.330 | 0.340 [0.240, 0.440] | 0.170 | 0 | 93 |" in summary
    assert ("| resnet18 | synthetic | 0.849 [0.774, 0.914] (full) | 0.849 [0.774, 0.914] (lungs) "
            "| 0.849 [0.774, 0.914] (outside) |") in summary
    assert all(png(path).width > 0 for path in FIGURES)
    assert colour_blocks(Path(REPORT_OUTPUTS["explanations-figure"])) == [4, 4, 4]
    cards = sorted(CARDS.iterdir())
    assert [card.name for card in cards] == sorted(f"{m}-{d}.md" for d in DATASETS for m in MODELS)
    page = PAGE.read_text()
    assert page.count("<figure>") == page.count("<figcaption>") and 'id="shortcut"' in page and 'id="audit"' in page
    assert '<p class="banner">Synthetic data only. Sources: synthetic: synthetic films written by' in page
    card = (CARDS / "densenet161-full.md").read_text()
    _, header, body = card.split("---\n", 2)
    assert body.splitlines()[3].startswith("> **Synthetic data only. Sources: synthetic:")
    # Which checkpoint it is: the MD5 dvc.lock records, also on the page.
    md5 = hashlib.md5(b"full/densenet161 weights").hexdigest()
    assert f"MD5 `{md5}`" in body and f"git log -S {md5}" in body and f"full/densenet161 {md5[:12]}" in page
    # The Hugging Face Hub's header: licence and the test scores, the own split's first.
    hub = yaml.safe_load(header)
    assert hub["license"] == "cc-by-nc-nd-4.0" and "synthetic-data" in hub["tags"]
    results = hub["model-index"][0]["results"]
    assert hub["model-index"][0]["name"] == "densenet161-full" and results[0]["dataset"]["type"] == "full"
    assert {m["type"]: m["value"] for m in results[0]["metrics"]}["accuracy"] == round(classify_metrics()["accuracy"], 4)
    assert [section for section in body.splitlines() if section.startswith("## ")] == [
        "## Model details", "## Intended use", "## Factors", "## Metrics", "## Training data", "## Evaluation data",
        "## Quantitative analyses (95% bootstrap intervals)", "## Ethical considerations", "## Caveats and recommendations"]
    # Its best epoch is its last (1 of 1): the card says it may still improve.
    assert "- Best epoch 1 of 1 by validation macro-F1 (0.500): the last one, so it may still improve" in card
    assert "### Shortcut audit of its source" in card and "resnet18 on the outside view 0.849 [0.774, 0.914]" in card
    first = [path.read_bytes() for path in [*FIGURES, PAGE, *cards]]
    run_report()
    assert [path.read_bytes() for path in [*FIGURES, PAGE, *cards]] == first, "the same bytes again"


def test_report_stage_names_a_missing_explanation(workdir):
    params = tiny_params(models=MODELS, datasets=DATASETS)
    write_params(workdir, params)
    write_report_inputs(params)
    explanation_file(explanation_folder("lungs", "densenet161")).unlink()
    with pytest.raises(SystemExit, match=r"reports/explain/lungs/densenet161/maps.npz not found.*dvc repro"):
        run_report()
    assert not SUMMARY.exists()


def test_report_stage_names_a_missing_confusion_matrix_before_writing_anything(workdir):
    params = tiny_params(models=MODELS, datasets=DATASETS)
    write_params(workdir, params)
    write_report_inputs(params)
    evaluated("full", "resnet18", "hospital2_full").confusion.unlink()
    with pytest.raises(SystemExit, match=r"reports/cross/full-on-hospital2_full/resnet18/confusion.json not found"):
        run_report()
    assert not SUMMARY.exists() and not PAGE.exists() and not CARDS.exists()


def test_the_comparison_figure_draws_each_sources_chance_level(tmp_path):
    """The bars beside what always answering the training split's majority class scores: one dashed line per
    distinct level, named by the datasets it belongs to (two views of one source share theirs)."""
    from cxr.report.summary import comparison_figure

    scores = {"accuracy": 0.8, "accuracy_ci_low": 0.7, "accuracy_ci_high": 0.9,
              "macro_f1": 0.75, "macro_f1_ci_low": 0.6, "macro_f1_ci_high": 0.85}
    runs = [(dataset, model, scores) for dataset in ("full", "lungs", "kermany") for model in ("a", "b")]
    chance = {"full": {"chance_accuracy": 1 / 3, "chance_macro_f1": 1 / 6},
              "lungs": {"chance_accuracy": 1 / 3, "chance_macro_f1": 1 / 6},
              "kermany": {"chance_accuracy": 0.625, "chance_macro_f1": 0.256}}
    figure = comparison_figure(tmp_path / "c.png", runs, ["full", "lungs", "kermany"], ["a", "b"], "95%", chance)
    accuracy, macro_f1 = figure.axes[:2]
    def levels(axis):
        return sorted((line.get_ydata()[0], line.get_label()) for line in axis.get_lines() if line.get_label().startswith("chance"))
    assert levels(accuracy) == [(pytest.approx(1 / 3), "chance (full, lungs): 0.33"), (0.625, "chance (kermany): 0.62")]
    assert [y for y, _ in levels(macro_f1)] == [pytest.approx(1 / 6), 0.256]
    assert {text.get_text() for text in macro_f1.get_legend().get_texts()} == {label for _, label in levels(macro_f1)}
    assert not [line for line in comparison_figure(tmp_path / "d.png", runs, ["full"], ["a", "b"], "95%").axes[0].get_lines()
                if line.get_label().startswith("chance")]


def test_the_data_banner_says_synthetic_only_when_every_source_is_generated_here():
    from cxr.report.summary import data_banner

    sources = {"synthetic": {"path": "data/raw/synthetic", "layout": "auto"},
               "radiography": {"path": "data/raw/COVID-19_Radiography_Dataset.zip", "layout": "radiography"}}
    generators = {"generate": {"synthetic": {"out_dir": "data/raw/synthetic", "shortcut_dir": "data/raw/synthetic-shortcut"}},
                  "generate_radiography": {}}
    assert data_banner(["synthetic"], sources, generators) == (
        "Synthetic data only. Sources: synthetic: synthetic films written by this pipeline's generate@synthetic "
        "stage, no patient's.")
    mixed = data_banner(["radiography", "synthetic"], sources, generators)
    assert mixed.startswith("Data. Sources: radiography: read from data/raw/COVID-19_Radiography_Dataset.zip "
                            "(layout radiography); synthetic: synthetic films")
    # After a preset the generators are gone: the same path is then a download, not synthetic.
    assert data_banner(["synthetic"], sources, {"generate": {}, "generate_radiography": {}}).startswith("Data. ")
