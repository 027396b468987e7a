r"""Gather every model x dataset run into one summary: scores, cross tests and where the explanation maps fall,
with a comparison figure, the CAMs of the same test images across every run, and the lung zones they involve;
then the lung segmenter per dataset and the cascade (lungs models on films cut out by the segmenter). All of it
also as one self-contained page, a model card per trained model, and the headline scores DVC shows.

    python stages/report.py \
        --classify metrics/classify --cross metrics/cross --explain-metrics metrics/explain \
        --segment-metrics metrics/segment --audits metrics/data --sources reports/data/sources \
        --views reports/data/views --evaluations reports/evaluate --cross-evaluations reports/cross \
        --train-logs reports/train --explanations reports/explain --segment-reports reports/segment \
        --summary reports/summary.md --headline metrics/headline.json --page reports/index.html \
        --cards reports/cards --comparison-figure reports/comparison.png \
        --explanations-figure reports/explanations.png --zones-figure reports/zones.png

Each input is the folder one stage family writes under, in the layout cxr.report.files describes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cxr.metrics.params import CrossTests
from cxr.params import Names, freeze_imports, stage_arguments, stage_params
from cxr.report.build import load_runs, write_report
from cxr.report.files import ReportInputs, ReportOutputs
from cxr.report.params import ProbeParams, ShortcutParams
from cxr.report.summary import MissingMetrics


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, paths={
        "classify": "the evaluate stages' metrics, <dataset>/<model>.json", "cross": "the crosstest stages' metrics",
        "explain-metrics": "the explain stages' metrics", "segment-metrics": "the segmenter's, evaluate/ and explain/",
        "audits": "each source's shortcut audit", "sources": "each source's data report",
        "views": "each dataset's view report", "evaluations": "the evaluate stages' per-model confusion, ROC, checkpoint",
        "cross-evaluations": "the crosstest stages' confusions", "train-logs": "the train stages' dvclive folders",
        "explanations": "the explain stages' maps and class panels",
        "segment-reports": "the segmenter's figures per dataset and its training log (train/)",
        "summary": "the tables in markdown (written)", "headline": "the headline scores DVC shows (written)",
        "page": "every result in one self-contained HTML page (written)",
        "cards": "the folder of the model cards (replaced)", "comparison-figure": "scores of every run (written)",
        "explanations-figure": "the same test images' CAMs across runs (written)",
        "zones-figure": "the lung zones the CAMs involve (written)"})
    inputs, outputs = ReportInputs.from_arguments(args), ReportOutputs.from_arguments(args)
    params = stage_params({"datasets": Names, "models": Names, "cross_tests": CrossTests, "segmented_dataset": dict,
                           "segment.evaluate_on": Names, "train": dict, "model": dict,
                           "dataset": dict, "probe": ProbeParams, "shortcut": ShortcutParams | None,
                           "evaluate.confidence_level": Annotated[float, Field(gt=0, lt=1)],
                           "generate": dict, "generate_radiography": dict})
    probe: ProbeParams = params["probe"]
    shortcut: ShortcutParams | None = params["shortcut"]
    if shortcut is not None and (shortcut.clean not in params["datasets"] or not set(probe.models) <= set(params["models"])):
        raise SystemExit(f"error: params.yaml shortcut: clean ({shortcut.clean}) must be one of `datasets` and probe.models "
                         f"({', '.join(probe.models)}) among `models`: the marked runs are compared with those (`cxr check`)")

    try:
        results = load_runs(params, inputs)
    except MissingMetrics as err:
        raise SystemExit(f"error: {err}") from None
    print(write_report(results, params, inputs, outputs))


if __name__ == "__main__":
    freeze_imports()
    main()
