"""Tables and a figure comparing every model x dataset run: scores, cross tests, where the explanation maps
fall, and the lung segmenter with what its errors cost the classifiers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # a bare Figure needs no GUI backend: the pipeline runs on servers and in CI

from cxr.explain.results import Explanations
from cxr.anatomy.lungs import ZONES
from cxr.explain.scores import ABOUGAZIA_2021, has_zone_reference
from cxr.io.files import atomic_path
from cxr.metrics.classification import slug
from cxr.report.files import ReportInputs


class MissingMetrics(FileNotFoundError):
    """An evaluation or explanation the report needs has not run."""


def load_metrics(inputs: ReportInputs, dataset: str, model: str, tested_on: str | None = None) -> dict:
    path = _existing(inputs.evaluation(dataset, model, tested_on).metrics,
                     f"evaluate {model}/{dataset} on {tested_on or dataset}")
    return json.loads(path.read_text())


def load_explain_metrics(inputs: ReportInputs, dataset: str, model: str) -> dict:
    return json.loads(_existing(inputs.explain_metrics_file(dataset, model), f"explain {model}/{dataset}").read_text())


def load_explanations(inputs: ReportInputs, dataset: str, model: str) -> Explanations:
    return Explanations.load(_existing(inputs.maps(dataset, model), f"explain {model}/{dataset}"))


def load_confusion(inputs: ReportInputs, dataset: str, model: str, classes: list[str], tested_on: str | None = None
                   ) -> np.ndarray:
    """(true, predicted) counts from evaluate's confusion.json records."""
    path = _existing(inputs.evaluation(dataset, model, tested_on).confusion,
                     f"evaluate {model}/{dataset} on {tested_on or dataset}")
    index = {name: k for k, name in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    for record in json.loads(path.read_text()):
        counts[index[record["actual"]], index[record["predicted"]]] += 1
    return counts


def load_view_report(inputs: ReportInputs, dataset: str) -> dict:
    return json.loads(_existing(inputs.view_report(dataset), f"prepare {dataset}").read_text())


def load_train_summary(inputs: ReportInputs, dataset: str, model: str) -> dict:
    return json.loads(_existing(inputs.train_summary(dataset, model), f"train {model}/{dataset}").read_text())


def checkpoint_md5(inputs: ReportInputs, dataset: str, model: str) -> str:
    """The MD5 of the checkpoint its evaluation scored, as dvc.lock records it: the model's version in its card and
    on the page."""
    record = _existing(inputs.evaluation(dataset, model).checkpoint_record, f"evaluate {model}/{dataset}")
    return json.loads(record.read_text())["md5"]


def provenance_line(checkpoints: Mapping[tuple[str, str], str]) -> str:
    """Which checkpoints the page is about, by the hash dvc.lock records for each, and how to find the commit."""
    listed = ", ".join(f"{dataset}/{model} {md5[:12]}" for (dataset, model), md5 in checkpoints.items())
    return (f"Checkpoints (MD5 as dvc.lock records them): {listed}. The commit that made one, and its date: "
            "git log -S <md5> --format='%h %ad' -- dvc.lock")


def _existing(path: Path, stage: str) -> Path:
    if not path.exists():
        raise MissingMetrics(f"{path} not found: {stage} first (`dvc repro`)")
    return path


GENERATOR_OUTPUTS = ("out_dir", "shortcut_dir", "out_zip")  # the params keys naming what a generator writes


def data_banner(sources: Sequence[str], source_reports: Mapping[str, dict], generators: Mapping[str, dict]) -> str:
    """Which data the results are about, for the top of the report and of every card: each source is either
    synthetic (its path is written by one of this pipeline's generators, `generators`: the generate sections of
    params.yaml) or read from its path, in the layout the index found (`source_reports`: load_source_report)."""
    written = _generated(generators)
    parts = []
    for source in sources:
        path = source_reports[source]["path"]
        if path in written:
            parts.append(f"{source}: synthetic films written by this pipeline's {written[path]} stage, no patient's")
        else:
            parts.append(f"{source}: read from {path} (layout {source_reports[source]['layout']})")
    return ("Synthetic data only. " if all_synthetic(sources, source_reports, generators) else "Data. ") + "Sources: " \
        + "; ".join(parts) + "."


def _generated(generators: Mapping[str, dict]) -> dict[str, str]:
    """path -> the generate stage that writes it."""
    return {entry[key]: f"{section}@{name}" for section, entries in generators.items()
            for name, entry in (entries or {}).items() for key in GENERATOR_OUTPUTS if entry.get(key)}


def all_synthetic(sources: Sequence[str], source_reports: Mapping[str, dict], generators: Mapping[str, dict]) -> bool:
    """Whether every one of `sources` is written by this pipeline's generators (data_banner's arguments)."""
    return all(source_reports[source]["path"] in _generated(generators) for source in sources)


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def with_interval(metrics: dict, key: str) -> str:
    """'0.412 [0.350, 0.470]': the value and its interval (`<key>_ci_low`, `<key>_ci_high`); n/a where null."""
    if metrics.get(key) is None:
        return "n/a"
    return f"{metrics[key]:.3f} [{metrics[f'{key}_ci_low']:.3f}, {metrics[f'{key}_ci_high']:.3f}]"


def summary_table(runs: list[tuple[str, str, dict]], level: str) -> str:
    lines = [
        f"| Dataset | Model | Accuracy [{level} CI] | Macro-F1 [{level} CI] | ROC-AUC (macro) | ECE | Test images |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, model, m in runs:
        lines.append(
            f"| {dataset} | {model} | {with_interval(m, 'accuracy')} | {with_interval(m, 'macro_f1')} "
            f"| {number(m['roc_auc_macro'])} | {m['ece']:.3f} | {m['n_test']} |"
        )
    return "\n".join(lines) + "\n"


def cross_table(runs: list[tuple[str, str, str, dict, dict]], level: str) -> str:
    """Models tested on another dataset's test split, beside their score on their own."""
    lines = [
        f"| Trained on | Tested on | Model | Accuracy [{level} CI] | Macro-F1 [{level} CI] | ROC-AUC (macro) "
        "| Macro-F1 change | Test images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for trained_on, tested_on, model, m, own in runs:
        lines.append(
            f"| {trained_on} | {tested_on} | {model} | {with_interval(m, 'accuracy')} | {with_interval(m, 'macro_f1')} "
            f"| {number(m['roc_auc_macro'])} | {m['macro_f1'] - own['macro_f1']:+.3f} | {m['n_test']} |"
        )
    return "\n".join(lines) + "\n"


def explanations_table(runs: list[tuple[str, str, dict]], level: str) -> str:
    """Where each run's maps fall (`runs`: (dataset, model, explain metrics)), under the line that says how to
    read its lift; the figures are over the class-balanced sample (the same films in every run), mask-based
    ones over its images with a lung mask."""
    lines = [
        "Lift is the share of the map inside the lungs over the lungs' share of the image: 1.0 is what a uniform "
        "map scores, above 1 the map favours the lungs; ROAD above 0 means removing the pixels the CAM ranks "
        "highest lowers the prediction more than removing those it ranks lowest.",
        "",
        f"| Dataset | Model | CAM layer (grid) | CAM lung energy [{level} CI] | Lift [{level} CI] "
        f"| Pointing game [{level} CI] | Saliency lung energy [{level} CI] | ROAD [{level} CI] | Sample of (explained; without mask) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, model, m in runs:
        lines.append(
            f"| {dataset} | {model} | {m['layer']} ({m['grid']}x{m['grid']}) | {with_interval(m, 'cam_lung_energy')} "
            f"| {with_interval(m, 'cam_lung_lift')} | {with_interval(m, 'cam_pointing')} "
            f"| {with_interval(m, 'saliency_lung_energy')} | {with_interval(m, 'road')} "
            f"| {m['sampled']} ({m['images']}; {m['without_mask']}) |"
        )
    return "\n".join(lines) + "\n"


def zone_class(classes: list[str]) -> str | None:
    """The class that the radiology reference of lung zones describes (COVID-19), if the classes have it."""
    return next((name for name in classes if has_zone_reference(slug(name))), None)


def zones_table(runs: list[tuple[str, str, dict]], class_name: str) -> str:
    """Per run, the share of explained images predicted as `class_name` whose CAM involves each lung zone,
    beside the share of COVID-19 patients with findings there (Abougazia et al. 2021)."""
    key = slug(class_name)
    lines = [
        f"Share of the sampled test images predicted as {class_name} whose CAM involves each lung zone (holds at "
        "least the zone's share of the lung area in map mass), beside the share of COVID-19 patients with findings "
        "there on chest X-rays (Abougazia et al. 2021, doi 10.1155/2021/4496488; central not reported):",
        "",
        "| Dataset | Model | Images | " + " | ".join(zone.capitalize() for zone in ZONES) + " |",
        "|---|---|---|" + "---|" * len(ZONES),
    ]
    for dataset, model, m in runs:
        # A share of a handful of images moves in steps of 1/n: the count says how coarse it is.
        count = m.get(f"predicted_{key}")
        lines.append(f"| {dataset} | {model} | {'n/a' if count is None else count} | "
                     + " | ".join(number(m.get(f"involved_{zone}_{key}")) for zone in ZONES) + " |")
    reference = [ABOUGAZIA_2021.get(zone) for zone in ZONES]
    lines.append("| Abougazia et al. 2021 | COVID-19 patients | - | "
                 + " | ".join("-" if value is None else f"{value:.2f}" for value in reference) + " |")
    return "\n".join(lines) + "\n"


def comparison_figure(path: Path, runs: list[tuple[str, str, dict]], datasets: list[str], models: list[str], level: str,
                      chance: dict[str, dict] | None = None) -> Figure:
    """Accuracy and macro-F1 of every run with their intervals; `chance`: per dataset, its source's shortcut audit,
    whose chance_accuracy and chance_macro_f1 (always the training split's majority class) are drawn as lines."""
    metrics = {(dataset, model): m for dataset, model, m in runs}
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2, sharey=True)
    width = 0.8 / len(datasets)
    positions = np.arange(len(models))
    for axis, (key, title) in zip(axes, [("accuracy", "Accuracy"), ("macro_f1", "Macro-F1")]):
        for offset, dataset in enumerate(datasets):
            values = np.array([metrics[dataset, model][key] for model in models])
            low = np.array([metrics[dataset, model][f"{key}_ci_low"] for model in models])
            high = np.array([metrics[dataset, model][f"{key}_ci_high"] for model in models])
            axis.bar(positions + (offset - (len(datasets) - 1) / 2) * width, values, width,
                     yerr=np.vstack([values - low, high - values]), capsize=3, label=dataset)
        # One line per distinct chance level (the views of one source share it), named by its datasets.
        levels: dict[float, tuple[float, list[str]]] = {}
        for dataset in datasets:
            value = (chance or {}).get(dataset, {}).get(f"chance_{key}")
            if value is not None:
                levels.setdefault(round(value, 3), (value, []))[1].append(dataset)
        for value, named in levels.values():
            axis.axhline(value, color="0.3", linestyle="--", linewidth=1,
                         label=f"chance ({', '.join(named)}): {value:.2f}")
        axis.set_xticks(positions, models, rotation=15)
        axis.set_title(f"{title} on the test split ({level} bootstrap CI)")
        axis.set_ylim(0, 1)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)  # the datasets' bars and the accuracy's chance lines
    lines = [(handle, label) for handle, label in zip(*axes[1].get_legend_handles_labels()) if label.startswith("chance")]
    if lines:
        axes[1].legend(*zip(*lines), fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        # No software/version stamp, so the same metrics give the same bytes.
        figure.savefig(tmp, dpi=120, format="png", metadata={"Software": None})
    return figure


def load_segment_metrics(inputs: ReportInputs, dataset: str) -> tuple[dict, dict]:
    """The segmenter's evaluation and interpretation metrics on one dataset's test split (and the check that
    the interpretation's figures, which the report shows, are there too)."""
    evaluation = _existing(inputs.segment_evaluation(dataset), f"segment_evaluate on {dataset}")
    interpretation = _existing(inputs.segment_interpretation(dataset), f"segment_explain on {dataset}")
    for figure in (inputs.segment_gallery(dataset), inputs.segment_zones(dataset)):
        _existing(figure, f"segment_explain on {dataset}")
    return json.loads(evaluation.read_text()), json.loads(interpretation.read_text())


def segmentation_table(runs: list[tuple[str, dict, dict]], level: str) -> str:
    """The segmenter per dataset: overlap with the true masks, anatomy of its masks, what it attends to."""
    lines = [
        f"| Dataset | Dice [{level} CI] | IoU [{level} CI] | Mask mAP50 | Mask mAP50-95 | Plausible | Empty / >2 lungs / "
        "on border | Grad-CAM lung lift | Uncertainty on the lung border | Test images (with mask) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, m, explained in runs:
        lines.append(
            f"| {dataset} | {with_interval(m, 'dice')} | {with_interval(m, 'iou')} | {number(m['mask_map50'])} "
            f"| {number(m['mask_map50_95'])} | {number(m['plausible'])} | {m['empty']} / {m['more_than_two']} / "
            f"{m['touches_border']} | {number(explained['attention_lung_lift'])} | {number(explained['uncertainty_on_border'])} "
            f"| {m['images']} ({m['images_with_truth']}) |"
        )
    return "\n".join(lines) + "\n"


def cascade_table(runs: list[tuple[str, str, str, dict, dict]], level: str) -> str:
    """Lungs models on films cut out by the segmenter, beside the same films cut out by the true masks; the changes
    are segmenter-mask minus true-mask scores, negative when the segmenter costs, as the cross tests' changes."""
    lines = [
        f"| Model | Accuracy, true masks [{level} CI] | Accuracy, segmenter masks [{level} CI] | Accuracy change "
        "| Macro-F1 change | Test images |",
        "|---|---|---|---|---|---|",
    ]
    for _, _, model, m, own in runs:
        lines.append(
            f"| {model} | {with_interval(own, 'accuracy')} | {with_interval(m, 'accuracy')} "
            f"| {m['accuracy'] - own['accuracy']:+.3f} | {m['macro_f1'] - own['macro_f1']:+.3f} | {m['n_test']} |"
        )
    return "\n".join(lines) + "\n"


def diagnosis_runs(segment_runs: list[tuple[str, dict, dict]]) -> list[tuple[str, str, dict]]:
    """The segmenter as a classifier (label mode `diagnosis`), in the comparison table's form."""
    prefix = "diagnosis_"
    return [(dataset, "yolov8n-seg", {key[len(prefix):]: value for key, value in m.items() if key.startswith(prefix)})
            for dataset, m, _ in segment_runs if f"{prefix}accuracy" in m]


def shortcut_table(runs: list[tuple[str, dict, dict, dict | None, dict | None, dict, dict]], level: str,
                   marker_free: str) -> str:
    """Models trained on clean films and on marked ones: (model, clean own, marked own, clean marker-free or None,
    marked marker-free, clean explain, marked explain)."""
    lines = [
        "| Model | Own test accuracy: clean → marked | "
        f"Marker-free accuracy ({marker_free}) [{level} CI]: clean → marked | CAM lung energy [{level} CI]: clean → marked "
        f"| Saliency lung energy [{level} CI]: clean → marked |",
        "|---|---|---|---|---|",
    ]
    for model, clean, marked, clean_free, marked_free, clean_explain, marked_explain in runs:
        free = "n/a" if clean_free is None else with_interval(clean_free, "accuracy")
        lines.append(
            f"| {model} | {clean['accuracy']:.3f} → {marked['accuracy']:.3f} | {free} → {with_interval(marked_free, 'accuracy')} "
            f"| {with_interval(clean_explain, 'cam_lung_energy')} → {with_interval(marked_explain, 'cam_lung_energy')} "
            f"| {with_interval(clean_explain, 'saliency_lung_energy')} → {with_interval(marked_explain, 'saliency_lung_energy')} |"
        )
    return "\n".join(lines) + "\n"


def load_source_audit(inputs: ReportInputs, source: str) -> dict:
    return json.loads(_existing(inputs.audit(source), f"index {source}").read_text())


def load_source_report(inputs: ReportInputs, source: str) -> dict:
    """The index stage's data report of a source: its path and detected layout among much else."""
    return json.loads(_existing(inputs.source_report(source), f"index {source}").read_text())


def audit_table(audits: list[tuple[str, dict]], level: str) -> str:
    """Per source: how well a classifier reads the class from what carries no diagnosis (size, format, mask
    provenance, intensities and corners outside the lungs), beside chance."""
    lines = [
        f"| Source | Metadata-only accuracy [{level} CI] | Chance accuracy | Metadata-only macro-F1 [{level} CI] "
        "| Chance macro-F1 | Shortcut flags | Test images |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, m in audits:
        lines.append(f"| {source} | {with_interval(m, 'baseline_accuracy')} | {number(m.get('chance_accuracy'))} "
                     f"| {with_interval(m, 'baseline_macro_f1')} | {number(m.get('chance_macro_f1'))} "
                     f"| {m.get('shortcut_flags', 0)} | {m.get('test_images', 0)} |")
    return "\n".join(lines) + "\n"


def views_table(rows: list[tuple[str, str, list[tuple[str, str, dict | None]]]], level: str) -> str:
    """One model on the views of one source: (model, source, [(view, dataset, metrics or None)])."""
    views = [view for view, _, _ in rows[0][2]] if rows else []
    lines = ["| Model | Source | " + " | ".join(f"{view} accuracy [{level} CI]" for view in views) + " |",
             "|---|---|" + "---|" * len(views)]
    for model, source, cells in rows:
        lines.append(f"| {model} | {source} | " + " | ".join(
            "n/a" if m is None else f"{with_interval(m, 'accuracy')} ({dataset})" for _, dataset, m in cells) + " |")
    return "\n".join(lines) + "\n"


def outside_rows(entries: dict, datasets: list[str], own: dict, probe_runs: dict
                 ) -> list[tuple[str, str, list[tuple[str, str, dict | None]]]]:
    """Each probe run on an outside view beside the same model on the full and lungs views of that source, where
    the grid has them: (model, source, [(view, dataset, metrics or None)])."""
    rows = []
    for (name, model), metrics in probe_runs.items():
        source = entries[name]["source"]
        if entries[name]["view"] != "outside":
            continue
        cells = []
        for view in ("full", "lungs"):
            grid = next((d for d in datasets if entries[d]["source"] == source and entries[d]["view"] == view), None)
            cells.append((view, grid or "-", own.get((grid, model))))
        rows.append((model, source, [*cells, ("outside", name, metrics)]))
    return rows
