"""The files the report stage reads and writes, as dvc.yaml passes them on its command line: each input is the
folder another stage family writes under (its layout below), each output the path to write.

    classify/<dataset>/, evaluations/<dataset>/           the evaluate stage's (cxr.metrics.outputs.EvaluationFiles)
    cross/<trained>-on-<tested>/, cross_evaluations/...    the crosstest stage's, likewise
    explain_metrics/<dataset>/<model>.json                 explain's flat metrics
    explanations/<dataset>/<model>/                        explain's maps and class panels (cxr.explain.results)
    train_logs/<dataset>/<model>/                          train's dvclive folder: metrics.json, plots/metrics/
    segment_metrics/evaluate/<dataset>.json, .../explain/<dataset>.json   segment_evaluate's, segment_explain's
    segment_reports/<dataset>/{gallery,zones}.png, segment_reports/train/ segment_explain's figures, segment_train's log
    audits/<source>.json, sources/<source>.json            the index stage's shortcut audit and data report
    views/<dataset>.json                                   the prepare stage's view report
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

from cxr.explain.results import explanation_file
from cxr.metrics.outputs import EvaluationFiles

_Record = TypeVar("_Record")

# dvclive's layout inside a training's log folder.
_SUMMARY = "metrics.json"
_CURVES = Path("plots") / "metrics"


def _of_arguments(record: type[_Record], args: argparse.Namespace) -> _Record:
    return record(**{field.name: Path(getattr(args, field.name)) for field in fields(record)})


@dataclass(frozen=True)
class ReportInputs:
    """The folders the report reads; a field per option of the stage's command (`--explain-metrics`: explain_metrics)."""

    classify: Path
    cross: Path
    explain_metrics: Path
    segment_metrics: Path
    audits: Path
    sources: Path
    views: Path
    evaluations: Path
    cross_evaluations: Path
    train_logs: Path
    explanations: Path
    segment_reports: Path

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ReportInputs:
        return _of_arguments(cls, args)

    def evaluation(self, dataset: str, model: str, tested_on: str | None = None) -> EvaluationFiles:
        """The evaluation of the model trained on `dataset`: on its own test split, or on `tested_on`'s."""
        if tested_on is None or tested_on == dataset:
            return EvaluationFiles(self.classify / dataset, self.evaluations / dataset, model)
        pair = f"{dataset}-on-{tested_on}"
        return EvaluationFiles(self.cross / pair, self.cross_evaluations / pair, model)

    def explain_metrics_file(self, dataset: str, model: str) -> Path:
        return self.explain_metrics / dataset / f"{model}.json"

    def explanation_folder(self, dataset: str, model: str) -> Path:
        return self.explanations / dataset / model

    def maps(self, dataset: str, model: str) -> Path:
        """The explained test images and their maps (cxr.explain.results.Explanations)."""
        return explanation_file(self.explanation_folder(dataset, model))

    def panel(self, dataset: str, model: str, class_name: str) -> Path:
        """The figure of the run's explained test images of one true class."""
        return explanation_file(self.explanation_folder(dataset, model), class_name)

    def train_summary(self, dataset: str, model: str) -> Path:
        return self.train_logs / dataset / model / _SUMMARY

    def train_curves(self, dataset: str, model: str) -> Path:
        """One .tsv per logged metric, under train/ and val/."""
        return self.train_logs / dataset / model / _CURVES

    def segment_evaluation(self, dataset: str) -> Path:
        """The segmenter on the dataset's test split: Dice, IoU, mask mAP, failures, anatomical checks."""
        return self.segment_metrics / "evaluate" / f"{dataset}.json"

    def segment_interpretation(self, dataset: str) -> Path:
        """Where the segmenter attends, how unsure it is and on which lung zones, by diagnosis."""
        return self.segment_metrics / "explain" / f"{dataset}.json"

    def segment_gallery(self, dataset: str) -> Path:
        return self.segment_reports / dataset / "gallery.png"

    def segment_zones(self, dataset: str) -> Path:
        return self.segment_reports / dataset / "zones.png"

    @property
    def segment_train_curves(self) -> Path:
        return self.segment_reports / "train" / _CURVES

    def audit(self, source: str) -> Path:
        """The flat metrics of a source's shortcut audit: the metadata-only baseline beside chance, flag count."""
        return self.audits / f"{source}.json"

    def source_report(self, source: str) -> Path:
        """The data report of a source: what `cxr inspect --json` prints."""
        return self.sources / f"{source}.json"

    def view_report(self, dataset: str) -> Path:
        """Images per split and class in the view, and those the view had to skip."""
        return self.views / f"{dataset}.json"


@dataclass(frozen=True)
class ReportOutputs:
    """What the report writes; a field per option of the stage's command (`--zones-figure`: zones_figure)."""

    summary: Path  # the tables in markdown, which `cxr docs` copies into the documentation
    headline: Path  # a few scores per run (cxr.report.headline): the one metrics file dvc.yaml declares
    page: Path  # every result in one self-contained HTML page
    cards: Path  # a model card per trained classifier, the folder replaced as a whole
    comparison_figure: Path
    explanations_figure: Path
    zones_figure: Path

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ReportOutputs:
        return _of_arguments(cls, args)

    def card(self, dataset: str, model: str) -> Path:
        return self.cards / card_name(dataset, model)


def card_name(dataset: str, model: str) -> str:
    """The model card's file name in the cards folder."""
    return f"{model}-{dataset}.md"
