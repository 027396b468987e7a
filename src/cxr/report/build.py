"""What the report stage reads, as one record (`Runs`), and what it writes from it: the summary's markdown, the
figures, the page and the model cards. The stage itself only validates its params and calls these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.explain.figures import write_cross_model_figure, write_zones_figure
from cxr.explain.results import Explanations
from cxr.io.files import atomic_dir, write_json, write_text
from cxr.metrics.classification import slug
from cxr.report.cards import model_card
from cxr.report.files import ReportInputs, ReportOutputs, card_name
from cxr.report.headline import headline_metrics
from cxr.report.page import write_index
from cxr.report.params import ProbeParams, ShortcutParams
from cxr.report.summary import (
    all_synthetic,
    audit_table,
    cascade_table,
    checkpoint_md5,
    comparison_figure,
    cross_table,
    data_banner,
    diagnosis_runs,
    explanations_table,
    load_confusion,
    load_explain_metrics,
    load_explanations,
    load_metrics,
    load_segment_metrics,
    load_source_audit,
    load_source_report,
    load_train_summary,
    load_view_report,
    outside_rows,
    provenance_line,
    segmentation_table,
    shortcut_table,
    summary_table,
    views_table,
    zone_class,
    zones_table,
)

Run = tuple[str, str, dict]  # (dataset, model, metrics)
CrossRun = tuple[str, str, str, dict, dict]  # (trained_on, tested_on, model, metrics, the model's own test metrics)


@dataclass(frozen=True)
class Runs:
    """Every result the report shows, read from the stages' files (cxr.report.summary's loaders)."""

    datasets: list[str]
    models: list[str]
    level: str  # the intervals' confidence, as "95%"
    runs: list[Run]  # each model x dataset on its own test split
    cross: list[CrossRun]
    explain_runs: list[Run]  # their explanation metrics
    explained: dict[tuple[str, str], Explanations]
    segment_runs: list[tuple[str, dict, dict]]  # (dataset, segmenter metrics, its interpretation)
    marked: list[tuple]  # the shortcut experiment's rows (summary.shortcut_table)
    views: list[tuple]  # the probes on the outside views (summary.outside_rows)
    audits: list[tuple[str, dict]]  # (source, its shortcut audit)
    classes: list[str]
    confusions: dict[tuple[str, str, str], np.ndarray]  # (trained_on, tested_on, model)
    trained: dict[tuple[str, str], tuple[dict, dict]]  # (view report, training summary)
    checkpoints: dict[tuple[str, str], str]  # checkpoint MD5
    cascade: list[CrossRun]  # the cross tests on segmenter-cut lungs
    source_of: dict[str, str]  # dataset -> its source
    source_reports: dict[str, dict]  # every source the runs used -> its data report
    used: list[str]  # those sources, in order
    generators: dict[str, dict]  # params `generate` and `generate_radiography`

    @property
    def own(self) -> dict[tuple[str, str], dict]:
        return {(dataset, model): metrics for dataset, model, metrics in self.runs}

    @property
    def explain_by_run(self) -> dict[tuple[str, str], dict]:
        return {(dataset, model): metrics for dataset, model, metrics in self.explain_runs}

    @property
    def audit_by_source(self) -> dict[str, dict]:
        return dict(self.audits)


def load_runs(params: dict, inputs: ReportInputs) -> Runs:
    """The report's inputs under the report stage's params; MissingMetrics names the first file missing."""
    datasets, models = params["datasets"], params["models"]
    probe: ProbeParams = params["probe"]
    shortcut: ShortcutParams | None = params["shortcut"]
    runs = [(dataset, model, load_metrics(inputs, dataset, model)) for dataset in datasets for model in models]
    own = {(dataset, model): m for dataset, model, m in runs}
    cross = [(test.trained_on, test.tested_on, model, load_metrics(inputs, test.trained_on, model, test.tested_on),
              own[test.trained_on, model]) for test in params["cross_tests"] for model in models]
    explain_runs = [(dataset, model, load_explain_metrics(inputs, dataset, model)) for dataset in datasets for model in models]
    explained = {(dataset, model): load_explanations(inputs, dataset, model) for dataset in datasets for model in models}
    segment_runs = [(dataset, *load_segment_metrics(inputs, dataset)) for dataset in params["segment.evaluate_on"]]
    # The clean models' marker-free score is a cross test of theirs when `cross_tests` has it.
    clean_free = {(trained_on, tested_on, model): m for trained_on, tested_on, model, m, _ in cross}
    marked = [(model, load_metrics(inputs, shortcut.clean, model), load_metrics(inputs, shortcut.dataset, model),
               clean_free.get((shortcut.clean, shortcut.marker_free, model)),
               load_metrics(inputs, shortcut.dataset, model, shortcut.marker_free),
               load_explain_metrics(inputs, shortcut.clean, model), load_explain_metrics(inputs, shortcut.dataset, model))
              for model in probe.models] if shortcut is not None else []
    probe_runs = {(dataset, model): load_metrics(inputs, dataset, model) for dataset in probe.datasets for model in probe.models}
    source_of = {name: entry["source"] for name, entry in params["dataset"].items()}
    sources = list(dict.fromkeys(source_of[name] for name in [*datasets, *probe.datasets]))
    # The classes come from the explained runs: the report declares no classes param, and they all share one list.
    classes = explained[datasets[0], models[0]].classes
    tested = [test.tested_on for test in params["cross_tests"]] + [test.tested_on for test in probe.cross_tests]
    cut_out = source_of | {name: entry["source"] for name, entry in params["segmented_dataset"].items()}
    used = list(dict.fromkeys(cut_out[name] for name in [*datasets, *probe.datasets, *tested]))
    return Runs(
        datasets=datasets, models=models, level=f"{params['evaluate.confidence_level']:.0%}", runs=runs, cross=cross,
        explain_runs=explain_runs, explained=explained, segment_runs=segment_runs, marked=marked,
        views=outside_rows(params["dataset"], datasets, own, probe_runs),
        audits=[(source, load_source_audit(inputs, source)) for source in sources], classes=classes,
        confusions={(trained_on, tested_on, model): load_confusion(inputs, trained_on, model, classes, tested_on)
                    for trained_on, tested_on, model in [(d, d, m) for d, m in own] + [run[:3] for run in cross]},
        trained={(dataset, model): (load_view_report(inputs, dataset), load_train_summary(inputs, dataset, model))
                 for dataset in datasets for model in models},
        checkpoints={(dataset, model): checkpoint_md5(inputs, dataset, model) for dataset in datasets for model in models},
        cascade=[run for run in cross if run[1] in params["segmented_dataset"]], source_of=source_of,
        source_reports={source: load_source_report(inputs, source) for source in used}, used=used,
        generators={section: params[section] for section in ("generate", "generate_radiography")})


def summary_parts(results: Runs, shortcut: ShortcutParams | None) -> dict[str, str]:
    """Each table of the summary and the page, by name."""
    level = results.level
    # In label mode `diagnosis` the segmenter classifies too, and is compared beside the CNNs.
    parts = {"scores": summary_table(results.runs + diagnosis_runs(results.segment_runs), level),
             "cross": cross_table(results.cross, level) if results.cross else "",
             "explanations": explanations_table(results.explain_runs, level),
             "segmentation": segmentation_table(results.segment_runs, level),
             "cascade": cascade_table(results.cascade, level) if results.cascade else "",
             "shortcut": shortcut_table(results.marked, level, shortcut.marker_free) if results.marked else "",
             "audit": audit_table(results.audits, level),
             "views": views_table(results.views, level)}
    zones_class = zone_class(results.classes)
    if zones_class is not None:
        parts["zones"] = zones_table(results.explain_runs, zones_class)
    return parts


def summary_markdown(parts: dict[str, str], results: Runs, shortcut: ShortcutParams | None, outputs: ReportOutputs
                     ) -> str:
    """reports/summary.md: the tables, each introduced by the paragraph `cxr docs` finds it by; it names the figures
    beside it in `outputs`."""
    summary = parts["scores"]
    if results.cross:
        summary += "\nCross-dataset tests (each model on another dataset's test split):\n\n" + parts["cross"]
    summary += ("\nShortcut audit: how well each source's class can be read without looking at a lung, by a classifier "
                "on metadata and pixels outside the lungs (size, format, mask provenance, intensities, corners; "
                "reports/data/sources/<source>.json says which features and flags):\n\n" + parts["audit"])
    if "| outside" in parts["views"]:
        summary += ("\nThe same model on the whole film, the lungs only and everything but the lungs (lungs blacked out; "
                    "near chance unless the films carry the class outside the lungs):\n\n" + parts["views"])
    summary += ("\nExplanations (CAM and saliency maps of a class-balanced sample of test images, the same in every run, "
                "and of each run's misclassified ones, which have figures of their own in metrics/explain; "
                f"{outputs.explanations_figure.name} shows one image per class across runs):\n\n" + parts["explanations"])
    if "zones" in parts:
        summary += f"\nLung zones of {zone_class(results.classes)} predictions ({outputs.zones_figure.name}):\n\n" + parts["zones"]
    summary += ("\nLung segmentation (YOLOv8n-seg) on each dataset's test split; plausible: two lungs of similar size, "
                "a lung-like share of the image, centred, off the border; per image in reports/segment/<dataset>/:\n\n"
                + parts["segmentation"])
    if results.cascade:
        summary += ("\nCascade: the lungs models on the same test films cut out with the segmenter's masks instead of "
                    "the true ones (change: segmenter-mask score minus true-mask score, negative when the segmenter costs):\n\n" + parts["cascade"])
    if results.marked:
        summary += (f"\nShortcut experiment: trained on the full view of clean films ({shortcut.clean}) and of the same films "
                    f"with a class marker outside the lungs ({shortcut.dataset}); tested on each one's own test split and "
                    f"on marker-free films:\n\n" + parts["shortcut"])
    return summary


def write_figures(results: Runs, outputs: ReportOutputs) -> None:
    """The comparison of every run with each source's chance level, the same test images' CAMs across runs, and
    the lung zones the maps involve."""
    audits = results.audit_by_source
    chance = {dataset: audits[results.source_of[dataset]] for dataset in results.datasets
              if results.source_of[dataset] in audits}
    comparison_figure(outputs.comparison_figure, results.runs, results.datasets, results.models, results.level, chance=chance)
    write_cross_model_figure(results.explained, results.datasets, results.models, outputs.explanations_figure)
    shown = zone_class(results.classes) or results.classes[0]
    write_zones_figure(results.explain_by_run, results.datasets, results.models, slug(shown), outputs.zones_figure,
                       class_name=shown)


def write_cards(directory: Path, results: Runs, params: dict) -> None:
    """A model card per model x dataset run, the folder replaced as a whole."""
    with atomic_dir(directory) as cards:
        for dataset, model, metrics in results.runs:
            source = results.source_of[dataset]
            card = model_card(model, dataset, params["model"][model], params["train"], *results.trained[dataset, model],
                              metrics, [(tested_on, m) for trained_on, tested_on, name, m, _ in results.cross
                                        if (trained_on, name) == (dataset, model)],
                              results.explain_by_run[dataset, model], results.classes, results.level,
                              results.audit_by_source[source], [row for row in results.views if row[1] == source],
                              data_banner([source], results.source_reports, results.generators),
                              all_synthetic([source], results.source_reports, results.generators),
                              results.checkpoints[dataset, model])
            write_text(cards / card_name(dataset, model), card)


def write_report(results: Runs, params: dict, inputs: ReportInputs, outputs: ReportOutputs) -> str:
    """Every output of the report stage; returns the summary's markdown. The page draws some of `inputs` (curves,
    panels, the segmenter's figures) that the summary only counts."""
    shortcut: ShortcutParams | None = params["shortcut"]
    parts = summary_parts(results, shortcut)
    summary = summary_markdown(parts, results, shortcut, outputs)
    write_text(outputs.summary, summary)
    write_json(outputs.headline, headline_metrics(results.runs, results.explain_runs, results.segment_runs))
    write_figures(results, outputs)
    write_index(outputs.page, inputs, outputs, parts, results.datasets, results.models, results.classes, results.own, results.cross,
                results.confusions, params["segment.evaluate_on"], results.cascade, shortcut, params["probe"].models,
                results.level, data_banner(results.used, results.source_reports, results.generators),
                provenance_line(results.checkpoints))
    write_cards(outputs.cards, results, params)
    return summary
