"""The report stage's record of its files (cxr.report.files) against dvc.yaml: it takes every path the report's
command passes, and finds each input file where the command of the stage that writes it puts it."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import pytest

from cxr.paths import command_arguments, stage_path
from cxr.report.files import ReportInputs, ReportOutputs
from cxr.report.summary import MissingMetrics, load_confusion, load_metrics
from tests.conftest import REPO

PIPELINE = REPO / "dvc.yaml"


def report_arguments() -> argparse.Namespace:
    """The report's command in dvc.yaml, as its options' values by dest."""
    words = command_arguments("report", pipeline=PIPELINE)
    options = {word: value for word, value in zip(words, words[1:]) if word.startswith("--")}
    return argparse.Namespace(**{option[2:].replace("-", "_"): value for option, value in options.items()})


def test_the_records_are_the_options_of_the_reports_command():
    given = set(vars(report_arguments()))
    assert {field.name for record in (ReportInputs, ReportOutputs) for field in fields(record)} == given
    outputs = ReportOutputs.from_arguments(report_arguments())
    assert outputs.summary == stage_path("report", "--summary", pipeline=PIPELINE)
    assert outputs.card("full", "resnet18") == stage_path("report", "--cards", pipeline=PIPELINE) / "resnet18-full.md"


def written(stage: str, option: str, **item: str) -> Path:
    return stage_path(stage, option, pipeline=PIPELINE, **item)


def test_each_input_is_where_the_stage_that_writes_it_puts_it():
    inputs = ReportInputs.from_arguments(report_arguments())
    run = {"dataset": "lungs", "model": "resnet18"}
    own = inputs.evaluation("lungs", "resnet18")
    assert own == inputs.evaluation("lungs", "resnet18", tested_on="lungs")
    assert (own.metrics_dir, own.reports_dir) == (written("evaluate", "--metrics", dataset="lungs"),
                                                  written("evaluate", "--reports", dataset="lungs"))
    test = {"test.trained_on": "lungs", "test.tested_on": "lungs_segmented"}
    cross = inputs.evaluation("lungs", "resnet18", tested_on="lungs_segmented")
    assert (cross.metrics_dir, cross.reports_dir) == (written("crosstest", "--metrics", **test),
                                                      written("crosstest", "--reports", **test))
    assert inputs.explain_metrics_file(**run) == written("explain", "--metrics", **run)
    assert inputs.maps(**run).parent == inputs.panel(**run, class_name="COVID-19").parent == written("explain", "--out", **run)
    assert inputs.train_summary(**run).parent == inputs.train_curves(**run).parent.parent == written("train", "--log", **run)
    assert inputs.segment_train_curves.parent.parent == written("segment_train", "--log")
    assert inputs.segment_evaluation("lungs") == written("segment_evaluate", "--metrics", dataset="lungs")
    assert inputs.segment_interpretation("lungs") == written("segment_explain", "--metrics", dataset="lungs")
    assert inputs.segment_gallery("lungs") == written("segment_explain", "--gallery", dataset="lungs")
    assert inputs.segment_zones("lungs") == written("segment_explain", "--zones", dataset="lungs")
    assert inputs.audit("synthetic") == written("index", "--audit", key="synthetic")
    assert inputs.source_report("synthetic") == written("index", "--report", key="synthetic")
    assert inputs.view_report("lungs") == written("prepare", "--report", key="lungs")


def test_a_missing_input_names_its_file_and_the_stage_that_writes_it(tmp_path):
    inputs = ReportInputs(*(tmp_path / field.name for field in fields(ReportInputs)))
    with pytest.raises(MissingMetrics, match=rf"^{tmp_path}/cross/full-on-kermany/resnet18.json not found: "
                                             r"evaluate resnet18/full on kermany first \(`dvc repro`\)$"):
        load_metrics(inputs, "full", "resnet18", "kermany")
    confusion = inputs.evaluation("full", "resnet18").confusion
    confusion.parent.mkdir(parents=True)
    confusion.write_text(json.dumps([{"actual": "a", "predicted": "b"}, {"actual": "b", "predicted": "b"}]))
    assert load_confusion(inputs, "full", "resnet18", ["a", "b"]).tolist() == [[0, 1], [0, 1]]
