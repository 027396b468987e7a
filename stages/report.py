"""Gather every model x dataset evaluation into one table and one comparison figure.

    python stages/report.py
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cxr.io.files import write_text
from cxr.params import Names, stage_arguments, stage_params
from cxr.paths import COMPARISON_FIGURE, SUMMARY_FILE
from cxr.report.summary import MissingMetrics, comparison_figure, load_metrics, summary_table


def main(argv: list[str] | None = None) -> None:
    stage_arguments(__doc__, argv)
    params = stage_params({"datasets": Names, "models": Names,
                           "evaluate.confidence_level": Annotated[float, Field(gt=0, lt=1)]})
    datasets, models = params["datasets"], params["models"]

    try:
        runs = [(dataset, model, load_metrics(dataset, model)) for dataset in datasets for model in models]
    except MissingMetrics as err:
        raise SystemExit(f"error: {err}") from None
    level = f"{params['evaluate.confidence_level']:.0%}"
    write_text(SUMMARY_FILE, summary_table(runs, level))
    comparison_figure(COMPARISON_FIGURE, runs, datasets, models, level)
    print(SUMMARY_FILE.read_text())


if __name__ == "__main__":
    main()
