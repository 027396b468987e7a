"""The pull-request report's parts that need no pipeline. The report of a real change is tested in
tests/test_pipeline.py (test_the_pr_report_shows_what_a_params_change_moved); its GitHub workflow is linted by
.ci/run (zizmor and GitHub's workflow schema), not by a test."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from cxr.cli import main
from cxr.cli.pr_report import PlotChange, diff_table


def test_headline_scores_that_moved_visibly_are_listed():
    headline = {"metrics/headline.json": {
                    "macro_f1.lungs/resnet18": {"old": 0.9, "new": 0.95, "diff": 0.05},
                    "accuracy.lungs/resnet18": {"old": 0.9, "new": 0.9002, "diff": 0.0002},  # below the shown precision
                    "ece.full/resnet18": {"old": None, "new": 0.04}}}  # a new score
    rows = diff_table(headline, "main", "metric", visible_only=True)
    assert rows[0] == "| file | metric | `main` | workspace | change |"
    assert rows[2:-1] == ["| metrics/headline.json | ece.full/resnet18 | - | 0.040 | - |",
                          "| metrics/headline.json | macro_f1.lungs/resnet18 | 0.900 | 0.950 | +0.050 |"]
    assert diff_table({"metrics/headline.json": {"accuracy.full/x": {"old": 1.0, "new": 1.0, "diff": 0.0}}}, "main",
                      "metric", visible_only=True) == []
    # The full table keeps every changed metric, in file and key order whatever order DVC gave them in.
    diff = {"metrics/classify/lungs/resnet18.json": {"recall_normal": {"old": 0.5, "new": 0.7, "diff": 0.2},
                                                     "accuracy": {"old": 0.9, "new": 0.9002, "diff": 0.0002}},
            "metrics/classify/full/resnet18.json": {"ece": {"old": None, "new": 0.04}}}
    full = diff_table(diff, "main", "metric")
    assert [row.split(" | ")[:2] for row in full[2:-1]] == [
        ["| metrics/classify/full/resnet18.json", "ece"], ["| metrics/classify/lungs/resnet18.json", "accuracy"],
        ["| metrics/classify/lungs/resnet18.json", "recall_normal"]]


def test_changed_params_are_listed_in_key_order():
    diff = {"params.yaml": {"train.processes": {"old": None, "new": 1}, "model.resnet18.lr": {"old": 0.001, "new": 0.0001},
                            "segment.evaluate_on": {"old": None, "new": "['full', 'lungs']"}}}
    assert diff_table(diff, "main", "param")[2:-1] == [
        "| params.yaml | model.resnet18.lr | 0.001 | 0.0001 |",
        "| params.yaml | segment.evaluate_on | - | ['full', 'lungs'] |",
        "| params.yaml | train.processes | - | 1 |"]


@pytest.mark.parametrize("name, run, series", [
    ("reports/train/lungs/resnet18/plots/metrics/val/macro_f1.tsv", "reports/train/lungs/resnet18", "val/macro_f1"),
    ("reports/evaluate/full/densenet161/roc/covid19.json", "reports/evaluate/full/densenet161", "roc/covid19"),
    ("reports/evaluate/full/densenet161/confusion.json", "reports/evaluate/full/densenet161", "confusion"),
    ("reports/segment/train/plots/metrics/train/loss.tsv", "reports/segment/train", "train/loss"),
])
def test_changed_plots_are_grouped_by_run(name, run, series):
    change = PlotChange(name=name, kind="vega", status="changed")
    assert (change.run, change.series) == (run, series)


def test_a_plot_of_every_model_is_reported_per_model_and_class():
    """evaluate's roc.json holds every model's curves: a change is the changed model's, one series per class."""
    change = PlotChange(name="reports/plots/evaluate/full/roc.json", kind="vega", status="changed",
                        group=(("model", "densenet161"), ("class", "COVID-19")))
    assert (change.run, change.series) == ("reports/plots/evaluate/full/densenet161", "roc/covid19")
    confusion = PlotChange(name="reports/plots/cross/full-on-hospital2_full/confusion.json", kind="vega",
                           status="new", group=(("model", "resnet18"),))
    assert (confusion.run, confusion.series) == ("reports/plots/cross/full-on-hospital2_full/resnet18", "confusion")


def test_an_unknown_base_revision_is_an_error_that_names_it(tmp_path, monkeypatch, capsys):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    assert main(["pr-report", "--base", "no-such-branch", "--out", str(tmp_path / "pr")]) == 1
    assert "no-such-branch" in capsys.readouterr().err
    assert not (tmp_path / "pr").exists()


def test_a_folder_that_is_no_report_is_never_replaced(tmp_path, monkeypatch, capsys):
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    assert main(["pr-report", "--base", "HEAD", "--out", str(precious)]) == 1
    assert "no earlier report" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "mine"
