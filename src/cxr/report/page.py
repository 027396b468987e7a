"""The sections of reports/index.html, each figure with a caption saying what it shows.

The tables are the summary's markdown (`parts`, as stages/report.py writes them to summary.md); the rest
is read from the files the evaluate, train, explain and segment stages wrote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cxr.metrics.classification import slug
from cxr.report.files import ReportInputs, ReportOutputs
from cxr.report.html import Section, confusion_table, curves_figure, read_curve, write_page
from cxr.report.params import ShortcutParams


def _epochs(path: Path) -> tuple:
    """A dvclive curve by epoch, counted from 1 as the checkpoints and logs count them (dvclive's step is from 0)."""
    steps, values = read_curve(path)
    return steps + 1, values


def _training_panels(curves: Path, title: str) -> list[tuple[str, dict, str]]:
    """Loss (train and val) and the validation scores of one dvclive log, as curves_figure panels."""
    loss = {f"{split} loss": _epochs(curves / split / "loss.tsv") for split in ("train", "val")
            if (curves / split / "loss.tsv").is_file()}
    scores = {path.stem: _epochs(path) for path in sorted((curves / "val").glob("*.tsv")) if path.stem != "loss"}
    return [(f"{title}: loss", loss, "loss"), (f"{title}: validation", scores, "score")]


def _roc_panel(inputs: ReportInputs, model: str, dataset: str, classes: Sequence[str], metrics: dict) -> tuple:
    """One-vs-rest ROC curves of each class of one run (evaluate's roc/ folder), as a curves_figure panel."""
    curves = {}
    for name in classes:
        path = inputs.evaluation(dataset, model).roc / f"{slug(name)}.json"
        if path.is_file():
            points = json.loads(path.read_text())
            auc = metrics.get(f"roc_auc_{slug(name)}")
            label = f"{name} (AUC {auc:.2f})" if auc is not None else f"{name} (AUC n/a)"
            curves[label] = ([p["fpr"] for p in points], [p["tpr"] for p in points])
    return (model, curves, "true positive rate")


TITLE = "Chest X-ray classification: results"


def write_index(path: Path, inputs: ReportInputs, outputs: ReportOutputs, parts: dict[str, str], datasets: Sequence[str], models: Sequence[str], classes: Sequence[str],
                own: dict[tuple[str, str], dict], cross: Sequence[tuple[str, str, str, dict, dict]],
                confusions: Mapping[tuple[str, str, str], np.ndarray],
                segmented: Sequence[str], cascade: Sequence[tuple], shortcut: ShortcutParams | None,
                probe_models: Sequence[str], level: str, banner: str, provenance: str) -> None:
    """`inputs`: where the curves and panels it draws lie; `outputs`: the figures it embeds, which the report wrote
    first. `own`: (dataset, model) -> test metrics; `cross`: (trained_on, tested_on, model, metrics, own metrics);
    `confusions`: (trained_on, tested_on, model) -> confusion counts, own runs with tested_on = trained_on."""
    subtitle = f"{len(models)} models x {len(datasets)} datasets ({', '.join(datasets)}), classes {', '.join(classes)}"
    sections = []

    scores = Section("scores", "Scores")
    scores.text(f"Every model on its own dataset's test split, with {level} bootstrap intervals (resampled test images).")
    scores.text(parts["scores"])
    scores.figure(outputs.comparison_figure, f"Accuracy and macro-F1 of every model on each dataset's test split; error bars: "
                  f"{level} bootstrap intervals.", "comparison of models and datasets")
    sections.append(scores)

    for dataset in datasets:
        section = Section(f"dataset-{slug(dataset)}", f"Dataset {dataset}")
        section.heading("Confusion matrices")
        matrices = "".join(confusion_table(confusions[dataset, dataset, model], classes, model)
                           for model in models)
        section.raw(f'<div class="matrices">{matrices}</div>')
        section.text("Rows: true class, columns: predicted class; a cell is shaded by its share of its row.")
        section.heading("ROC curves")
        section.figure(curves_figure([_roc_panel(inputs, m, dataset, classes, own[dataset, m]) for m in models],
                                     "false positive rate"),
                       f"One-vs-rest ROC curve of each class on the {dataset} test split, per model; the legend gives "
                       f"each class's area under the curve.", f"ROC curves on {dataset}")
        section.heading("Training curves")
        panels = [panel for model in models for panel in _training_panels(inputs.train_curves(dataset, model), model)]
        section.figure(curves_figure(panels, "epoch"), f"Per epoch of training on {dataset}: training and validation loss, "
                       f"and the validation scores (the kept checkpoint is the epoch of best validation macro-F1).",
                       f"training curves on {dataset}")
        sections.append(section)

    audit = Section("audit", "Shortcut audit")
    audit.text("How well each source's class can be read without looking at a lung: a classifier trained on what "
               "carries no diagnosis (native size, format, bit depth, border, lung-mask provenance, intensities and "
               "corner patches outside the lungs), scored on the test split beside chance. Near 1.0: the source's "
               "classes differ in how their films were made or collected, and a model can score without medicine.")
    audit.text(parts["audit"])
    if "| outside" in parts["views"]:
        audit.text("The same model on the whole film, the lungs only, and everything but the lungs (lungs blacked "
                   "out): the outside view should score near chance.")
        audit.text(parts["views"])
    sections.append(audit)

    if cross:
        section = Section("cross", "Cross-dataset")
        section.text("Each model tested on another dataset's test split (another hospital, or the lungs cut out by "
                     "the segmenter); the change is against its own test split.")
        section.text(parts["cross"])
        for trained_on, tested_on in dict.fromkeys((t, u) for t, u, *_ in cross):
            matrices = "".join(confusion_table(confusions[trained_on, tested_on, m], classes, m) for m in models)
            inner = Section("", "")
            inner.raw(f'<div class="matrices">{matrices}</div>')
            section.details(f"Confusion matrices: trained on {trained_on}, tested on {tested_on}", inner)
        sections.append(section)

    section = Section("explanations", "Explanations")
    section.text(parts["explanations"])
    section.figure(outputs.explanations_figure, "Grad-CAM of the predicted class on the same test image of each class, across "
                   "every model and dataset; white: lung outline, red title: misclassified.", "explanations across runs")
    if "zones" in parts:
        section.text(parts["zones"])
        section.figure(outputs.zones_figure, "Lung zones the Grad-CAM maps of COVID-19 predictions involve, per run, beside the "
                       "radiology reference.", "lung zones")
    for dataset in datasets:
        for model in models:
            inner = Section("", "")
            for name, panel in _panels(inputs, dataset, model, classes):
                inner.figure(panel, f"{model} on {dataset}, test images of true class {name}: the image, the CAM "
                             f"of the predicted class, of the true class (misclassified rows) and the saliency.",
                             f"{model} {dataset} {name}")
            section.details(f"Gallery: {model} on {dataset}", inner)
    sections.append(section)

    section = Section("segmentation", "Lung segmentation")
    section.text(parts["segmentation"])
    for dataset in segmented:
        section.figure(inputs.segment_gallery(dataset), f"The segmenter's worst test masks on {dataset} by Dice: the film, "
                       f"the true and predicted outlines, its per-pixel confidence and uncertainty.", f"gallery {dataset}")
        section.figure(inputs.segment_zones(dataset), f"Lung zones the segmenter covers and attends to on {dataset}, by "
                       f"diagnosis.", f"segmenter zones {dataset}")
    if inputs.segment_train_curves.is_dir():
        section.figure(curves_figure(_training_panels(inputs.segment_train_curves, "segmenter"), "epoch"),
                       "The segmenter's training: loss, and its validation box and mask mAP per epoch.", "segmenter training")
    if cascade:
        section.heading("Cascade")
        section.text("The lungs models on the same test films cut out with the segmenter's masks instead of the true "
                     "ones (change: segmenter-mask score minus true-mask score, negative when the segmenter costs).")
        section.text(parts["cascade"])
    sections.append(section)

    if shortcut is not None and probe_models:
        sections.append(_shortcut_section(inputs, shortcut, probe_models, parts["shortcut"], classes))
    write_page(path, TITLE, subtitle, banner, provenance, sections)


def _panels(inputs: ReportInputs, dataset: str, model: str, classes: Sequence[str]) -> list[tuple[str, Path]]:
    """(class, panel) of each class the explain stage drew a panel for."""
    panels = [(name, inputs.panel(dataset, model, name)) for name in classes]
    return [(name, panel) for name, panel in panels if panel.is_file()]


def _shortcut_section(inputs: ReportInputs, shortcut: ShortcutParams, models: Sequence[str], table: str,
                      classes: Sequence[str]) -> Section:
    section = Section("shortcut", "Shortcut experiment")
    section.text(f"The same models trained on the full view of clean films ({shortcut.clean}) and of the same films "
                 f"with a class marker outside the lungs ({shortcut.dataset}, a confounder as perfect as a hospital tag "
                 f"only its COVID-19 films carry). A model that learnt the marker scores high on its own (marked) test "
                 f"split, loses on the marker-free films of {shortcut.marker_free}, and looks less at the lungs.")
    section.text(table)
    for model in models:
        for dataset, words in ((shortcut.clean, "clean films"), (shortcut.dataset, "marked films")):
            # One class each: the two panels one after the other compare where the two models look.
            for name, panel in _panels(inputs, dataset, model, classes)[:1]:
                section.figure(panel, f"{model} trained on {words} ({dataset}), test images of true class {name}: "
                               f"the image, the CAMs and the saliency; on marked films, look for the corner tag.",
                               f"{model} {dataset} {name}")
    return section
