"""Gather every model x dataset run into one summary: scores, cross tests and where the explanation maps fall,
with a comparison figure, the CAMs of the same test images across every run, and the lung zones they involve;
then the lung segmenter per dataset and the cascade (lungs models on films cut out by the segmenter).

    python stages/report.py
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cxr.explain.figures import write_cross_model_figure, write_zones_figure
from cxr.io.files import write_text
from cxr.metrics.classification import slug
from cxr.metrics.params import CrossTests
from cxr.params import Names, stage_arguments, stage_params
from cxr.paths import COMPARISON_FIGURE, EXPLANATIONS_FIGURE, SUMMARY_FILE, ZONES_FIGURE
from cxr.report.summary import (
    MissingMetrics,
    cascade_table,
    comparison_figure,
    cross_table,
    diagnosis_runs,
    explanations_table,
    load_explain_metrics,
    load_explanations,
    load_metrics,
    load_segment_metrics,
    segmentation_table,
    summary_table,
    zone_class,
    zones_table,
)


def main(argv: list[str] | None = None) -> None:
    stage_arguments(__doc__, argv)
    params = stage_params({"datasets": Names, "models": Names, "cross_tests": CrossTests, "segmented_dataset": dict,
                           "segment.evaluate_on": Names,
                           "evaluate.confidence_level": Annotated[float, Field(gt=0, lt=1)]})
    datasets, models = params["datasets"], params["models"]

    try:
        runs = [(dataset, model, load_metrics(dataset, model)) for dataset in datasets for model in models]
        own = {(dataset, model): m for dataset, model, m in runs}
        cross = [(test.trained_on, test.tested_on, model, load_metrics(test.trained_on, model, test.tested_on),
                  own[test.trained_on, model]) for test in params["cross_tests"] for model in models]
        explain_runs = [(dataset, model, load_explain_metrics(dataset, model)) for dataset in datasets for model in models]
        explained = {(dataset, model): load_explanations(dataset, model) for dataset in datasets for model in models}
        segment_runs = [(dataset, *load_segment_metrics(dataset)) for dataset in params["segment.evaluate_on"]]
    except MissingMetrics as err:
        raise SystemExit(f"error: {err}") from None
    level = f"{params['evaluate.confidence_level']:.0%}"
    # In label mode `diagnosis` the segmenter classifies too, and is compared beside the CNNs.
    summary = summary_table(runs + diagnosis_runs(segment_runs), level)
    if cross:
        summary += "\nCross-dataset tests (each model on another dataset's test split):\n\n" + cross_table(cross, level)
    summary += ("\nExplanations (CAM and saliency maps of a class-balanced sample of test images, the same in every run, "
                "and of each run's misclassified ones, which have figures of their own in metrics/explain; "
                f"{EXPLANATIONS_FIGURE.name} shows one image per class across runs):\n\n" + explanations_table(explain_runs, level))
    # The classes come from the explained runs: the report declares no classes param, and they all share one list.
    classes = explained[datasets[0], models[0]].classes
    zones_class = zone_class(classes)
    if zones_class is not None:
        summary += f"\nLung zones of {zones_class} predictions ({ZONES_FIGURE.name}):\n\n" + zones_table(explain_runs, zones_class)
    summary += ("\nLung segmentation (YOLOv8n-seg) on each dataset's test split; plausible: two lungs of similar size, "
                "a lung-like share of the image, centred, off the border; per image in reports/segment/<dataset>/:\n\n"
                + segmentation_table(segment_runs, level))
    cascade = [run for run in cross if run[1] in params["segmented_dataset"]]
    if cascade:
        summary += ("\nCascade: the lungs models on the same test films cut out with the segmenter's masks instead of "
                    "the true ones (cost: true-mask score minus segmenter-mask score):\n\n" + cascade_table(cascade, level))
    write_text(SUMMARY_FILE, summary)
    comparison_figure(COMPARISON_FIGURE, runs, datasets, models, level)
    write_cross_model_figure(explained, datasets, models, EXPLANATIONS_FIGURE)
    shown = zones_class or classes[0]
    write_zones_figure({(dataset, model): m for dataset, model, m in explain_runs}, datasets, models, slug(shown),
                       ZONES_FIGURE, class_name=shown)
    print(SUMMARY_FILE.read_text())


if __name__ == "__main__":
    main()
