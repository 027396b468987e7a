"""Gather every model x dataset evaluation into one table and one comparison figure.

    python stages/report.py
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cxr.io.files import write_text
from cxr.metrics.params import CrossTests
from cxr.params import Names, stage_arguments, stage_params
from cxr.paths import COMPARISON_FIGURE, SUMMARY_FILE
from cxr.report.summary import MissingMetrics, comparison_figure, cross_table, load_metrics, summary_table


def main(argv: list[str] | None = None) -> None:
    stage_arguments(__doc__, argv)
    params = stage_params({"datasets": Names, "models": Names, "cross_tests": CrossTests,
                           "evaluate.confidence_level": Annotated[float, Field(gt=0, lt=1)]})
    datasets, models = params["datasets"], params["models"]

    try:
        runs = [(dataset, model, load_metrics(dataset, model)) for dataset in datasets for model in models]
        own = {(dataset, model): m for dataset, model, m in runs}
        cross = [(test.trained_on, test.tested_on, model, load_metrics(test.trained_on, model, test.tested_on),
                  own[test.trained_on, model]) for test in params["cross_tests"] for model in models]
    except MissingMetrics as err:
        raise SystemExit(f"error: {err}") from None
    level = f"{params['evaluate.confidence_level']:.0%}"
    summary = summary_table(runs, level)
    if cross:
        summary += "\nCross-dataset tests (each model on another dataset's test split):\n\n" + cross_table(cross, level)
    write_text(SUMMARY_FILE, summary)
    comparison_figure(COMPARISON_FIGURE, runs, datasets, models, level)
    print(SUMMARY_FILE.read_text())


if __name__ == "__main__":
    main()
