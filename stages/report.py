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

from cxr.metrics.params import CrossTests
from cxr.params import Names, freeze_imports, stage_arguments, stage_params
from cxr.report.build import load_runs, write_report
from cxr.report.params import ProbeParams, ShortcutParams
from cxr.report.summary import MissingMetrics


def main(argv: list[str] | None = None) -> None:
    stage_arguments(__doc__, argv)
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
        results = load_runs(params)
    except MissingMetrics as err:
        raise SystemExit(f"error: {err}") from None
    print(write_report(results, params))


if __name__ == "__main__":
    freeze_imports()
    main()
