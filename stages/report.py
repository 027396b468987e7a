"""Gather every model x dataset run into one summary: scores, cross tests and where the explanation maps fall,
with a comparison figure, the CAMs of the same test images across every run, and the lung zones they involve;
then the lung segmenter per dataset and the cascade (lungs models on films cut out by the segmenter). All of it
also as one self-contained page, reports/index.html, a model card per trained model in reports/cards/, and
the headline scores DVC shows (metrics/headline.json).

    python stages/report.py
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cxr.explain.figures import write_cross_model_figure, write_zones_figure
from cxr.io.files import atomic_dir, write_json, write_text
from cxr.metrics.classification import slug
from cxr.metrics.params import CrossTests
from cxr.params import Names, stage_arguments, stage_params
from cxr.paths import (
    CARDS_DIR,
    COMPARISON_FIGURE,
    EXPLANATIONS_FIGURE,
    HEADLINE_FILE,
    INDEX_FILE,
    SUMMARY_FILE,
    ZONES_FIGURE,
    card_file,
)
from cxr.report.cards import model_card
from cxr.report.headline import headline_metrics
from cxr.report.page import write_index
from cxr.report.params import ProbeParams, ShortcutParams
from cxr.report.summary import (
    MissingMetrics,
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


def main(argv: list[str] | None = None) -> None:
    stage_arguments(__doc__, argv)
    params = stage_params({"datasets": Names, "models": Names, "cross_tests": CrossTests, "segmented_dataset": dict,
                           "segment.evaluate_on": Names, "train": dict, "model": dict,
                           "dataset": dict, "probe": ProbeParams, "shortcut": ShortcutParams | None,
                           "evaluate.confidence_level": Annotated[float, Field(gt=0, lt=1)],
                           "generate": dict, "generate_radiography": dict})
    datasets, models = params["datasets"], params["models"]
    probe: ProbeParams = params["probe"]
    shortcut: ShortcutParams | None = params["shortcut"]
    if shortcut is not None and (shortcut.clean not in datasets or not set(probe.models) <= set(models)):
        raise SystemExit(f"error: params.yaml shortcut: clean ({shortcut.clean}) must be one of `datasets` and probe.models "
                         f"({', '.join(probe.models)}) among `models`: the marked runs are compared with those (`cxr check`)")

    try:
        runs = [(dataset, model, load_metrics(dataset, model)) for dataset in datasets for model in models]
        own = {(dataset, model): m for dataset, model, m in runs}
        cross = [(test.trained_on, test.tested_on, model, load_metrics(test.trained_on, model, test.tested_on),
                  own[test.trained_on, model]) for test in params["cross_tests"] for model in models]
        explain_runs = [(dataset, model, load_explain_metrics(dataset, model)) for dataset in datasets for model in models]
        explain_by_run = {(dataset, model): m for dataset, model, m in explain_runs}
        explained = {(dataset, model): load_explanations(dataset, model) for dataset in datasets for model in models}
        segment_runs = [(dataset, *load_segment_metrics(dataset)) for dataset in params["segment.evaluate_on"]]
        # The clean models' marker-free score is a cross test of theirs when `cross_tests` has it.
        clean_free = {(trained_on, tested_on, model): m for trained_on, tested_on, model, m, _ in cross}
        marked = [(model, load_metrics(shortcut.clean, model), load_metrics(shortcut.dataset, model),
                   clean_free.get((shortcut.clean, shortcut.marker_free, model)),
                   load_metrics(shortcut.dataset, model, shortcut.marker_free),
                   load_explain_metrics(shortcut.clean, model), load_explain_metrics(shortcut.dataset, model))
                  for model in probe.models] if shortcut is not None else []
        probe_runs = {(dataset, model): load_metrics(dataset, model) for dataset in probe.datasets for model in probe.models}
        sources = list(dict.fromkeys(params["dataset"][name]["source"] for name in [*datasets, *probe.datasets]))
        audits = [(source, load_source_audit(source)) for source in sources]
        # The classes come from the explained runs: the report declares no classes param, and they all share one list.
        classes = explained[datasets[0], models[0]].classes
        confusions = {(trained_on, tested_on, model): load_confusion(trained_on, model, classes, tested_on)
                      for trained_on, tested_on, model in [(d, d, m) for d, m in own] + [run[:3] for run in cross]}
        trained = {(dataset, model): (load_view_report(dataset), load_train_summary(dataset, model))
                   for dataset in datasets for model in models}
        checkpoints = {(dataset, model): checkpoint_md5(dataset, model) for dataset in datasets for model in models}
    except MissingMetrics as err:
        raise SystemExit(f"error: {err}") from None
    level = f"{params['evaluate.confidence_level']:.0%}"
    source_of = {name: entry["source"] for name, entry in params["dataset"].items()}
    audit_by_source = dict(audits)
    views = outside_rows(params["dataset"], datasets, own, probe_runs)
    zones_class = zone_class(classes)
    cascade = [run for run in cross if run[1] in params["segmented_dataset"]]
    # In label mode `diagnosis` the segmenter classifies too, and is compared beside the CNNs.
    parts = {"scores": summary_table(runs + diagnosis_runs(segment_runs), level),
             "cross": cross_table(cross, level) if cross else "",
             "explanations": explanations_table(explain_runs, level),
             "segmentation": segmentation_table(segment_runs, level),
             "cascade": cascade_table(cascade, level) if cascade else "",
             "shortcut": shortcut_table(marked, level, shortcut.marker_free) if marked else "",
             "audit": audit_table(audits, level),
             "views": views_table(views, level)}
    if zones_class is not None:
        parts["zones"] = zones_table(explain_runs, zones_class)

    summary = parts["scores"]
    if cross:
        summary += "\nCross-dataset tests (each model on another dataset's test split):\n\n" + parts["cross"]
    summary += ("\nShortcut audit: how well each source's class can be read without looking at a lung, by a classifier "
                "on metadata and pixels outside the lungs (size, format, mask provenance, intensities, corners; "
                "reports/data/sources/<source>.json says which features and flags):\n\n" + parts["audit"])
    if "| outside" in parts["views"]:
        summary += ("\nThe same model on the whole film, the lungs only and everything but the lungs (lungs blacked out; "
                    "near chance unless the films carry the class outside the lungs):\n\n" + parts["views"])
    summary += ("\nExplanations (CAM and saliency maps of a class-balanced sample of test images, the same in every run, "
                "and of each run's misclassified ones, which have figures of their own in metrics/explain; "
                f"{EXPLANATIONS_FIGURE.name} shows one image per class across runs):\n\n" + parts["explanations"])
    if zones_class is not None:
        summary += f"\nLung zones of {zones_class} predictions ({ZONES_FIGURE.name}):\n\n" + parts["zones"]
    summary += ("\nLung segmentation (YOLOv8n-seg) on each dataset's test split; plausible: two lungs of similar size, "
                "a lung-like share of the image, centred, off the border; per image in reports/segment/<dataset>/:\n\n"
                + parts["segmentation"])
    if cascade:
        summary += ("\nCascade: the lungs models on the same test films cut out with the segmenter's masks instead of "
                    "the true ones (change: segmenter-mask score minus true-mask score, negative when the segmenter costs):\n\n" + parts["cascade"])
    if marked:
        summary += (f"\nShortcut experiment: trained on the full view of clean films ({shortcut.clean}) and of the same films "
                    f"with a class marker outside the lungs ({shortcut.dataset}); tested on each one's own test split and "
                    f"on marker-free films:\n\n" + parts["shortcut"])
    write_text(SUMMARY_FILE, summary)
    write_json(HEADLINE_FILE, headline_metrics(runs, explain_runs, segment_runs))
    comparison_figure(COMPARISON_FIGURE, runs, datasets, models, level,
                      chance={dataset: audit_by_source[params["dataset"][dataset]["source"]] for dataset in datasets
                              if params["dataset"][dataset]["source"] in audit_by_source})
    write_cross_model_figure(explained, datasets, models, EXPLANATIONS_FIGURE)
    shown = zones_class or classes[0]
    write_zones_figure(explain_by_run, datasets, models, slug(shown),
                       ZONES_FIGURE, class_name=shown)
    generators = {section: params[section] for section in ("generate", "generate_radiography")}
    tested = [test.tested_on for test in params["cross_tests"]] + [test.tested_on for test in probe.cross_tests]
    sources = source_of | {name: entry["source"] for name, entry in params["segmented_dataset"].items()}
    used = list(dict.fromkeys(sources[name] for name in [*datasets, *probe.datasets, *tested]))
    try:
        source_reports = {source: load_source_report(source) for source in used}
    except MissingMetrics as err:
        raise SystemExit(f"error: {err}") from None
    write_index(INDEX_FILE, parts, datasets, models, classes, own, cross, confusions, params["segment.evaluate_on"], cascade,
                shortcut, probe.models, level, data_banner(used, source_reports, generators), provenance_line(checkpoints))
    with atomic_dir(CARDS_DIR) as cards:
        for dataset, model, metrics in runs:
            card = model_card(model, dataset, params["model"][model], params["train"], *trained[dataset, model], metrics,
                              [(tested_on, m) for trained_on, tested_on, name, m, _ in cross
                               if (trained_on, name) == (dataset, model)],
                              explain_by_run[dataset, model], classes, level, audit_by_source[source_of[dataset]],
                              [row for row in views if row[1] == source_of[dataset]],
                              data_banner([source_of[dataset]], source_reports, generators),
                              all_synthetic([source_of[dataset]], source_reports, generators), checkpoints[dataset, model])
            write_text(cards / card_file(dataset, model).name, card)
    print(SUMMARY_FILE.read_text())


if __name__ == "__main__":
    main()
