"""The headline DVC shows (metrics/headline.json) and `cxr experiments`' table of it, without a pipeline; both on
real `dvc exp show` output are tested in tests/test_experiments.py."""

from __future__ import annotations

from cxr.cli.experiments import Row, experiment_rows, experiments_table
from cxr.report.headline import headline_metrics

HEADLINE = "metrics/headline.json"


def test_the_headline_groups_each_score_by_run_rounded():
    runs = [("full", "resnet18", {"macro_f1": 0.712345, "accuracy": 0.75, "roc_auc_macro": 0.9, "ece": 0.05, "f1_normal": 1}),
            ("lungs", "resnet18", {"macro_f1": None, "accuracy": 0.5, "roc_auc_macro": None, "ece": 0.2})]
    explain_runs = [("full", "resnet18", {"cam_lung_lift": 1.23456})]  # no explanation of lungs/resnet18
    segment_runs = [("full", {"dice": 0.912349, "iou": 0.8}, {})]
    headline = headline_metrics(runs, explain_runs, segment_runs)
    assert headline == {"macro_f1": {"full/resnet18": 0.7123, "lungs/resnet18": None},
                        "accuracy": {"full/resnet18": 0.75, "lungs/resnet18": 0.5},
                        "roc_auc": {"full/resnet18": 0.9, "lungs/resnet18": None},
                        "ece": {"full/resnet18": 0.05, "lungs/resnet18": 0.2},
                        "cam_lung_lift": {"full/resnet18": 1.2346, "lungs/resnet18": None},
                        "dice": {"segmenter/full": 0.9123}}
    # Grouped by score first, so `dvc exp show` opens with every run's macro-F1.
    assert list(headline)[0] == "macro_f1"


def _data(macro_f1: dict, lr: float) -> dict:
    return {"metrics": {HEADLINE: {"data": {"macro_f1": macro_f1, "ece": dict.fromkeys(macro_f1, 0.1)}}},
            "params": {"params.yaml": {"data": {"model": {"resnet18": {"lr": lr}}, "train": {"epochs": 2}}}}}


SHOWN = [  # the shape of `dvc exp show --json`: the workspace, then a commit with its experiments
    {"rev": "workspace", "name": None, "data": _data({"full/resnet18": 0.5, "lungs/resnet18": 0.6}, 0.001),
     "experiments": None},
    {"rev": "a" * 40, "name": "main", "data": _data({"full/resnet18": 0.5, "lungs/resnet18": 0.6}, 0.001),
     "experiments": [{"name": "bold-lr", "revs": [{"rev": "b" * 40, "name": "bold-lr",
                                                   "data": _data({"full/resnet18": 0.7, "lungs/resnet18": 0.4}, 0.01)}]},
                     {"name": None, "revs": [{"rev": "c" * 40, "name": None, "data": {}}]}]},  # failed: no data
]


def test_rows_name_each_experiment_and_the_params_it_changed():
    rows = experiment_rows(SHOWN, HEADLINE)
    assert [(row.experiment, row.run) for row in rows] == [
        ("workspace", "full/resnet18"), ("workspace", "lungs/resnet18"), ("main", "full/resnet18"),
        ("main", "lungs/resnet18"), ("bold-lr", "full/resnet18"), ("bold-lr", "lungs/resnet18")]
    bold = rows[4]
    assert bold.changed == "model.resnet18.lr=0.01" and bold.scores == {"macro_f1": 0.7, "ece": 0.1}
    assert rows[0].changed == "" and rows[2].changed == ""


def test_the_table_is_best_first_only_with_scores_some_run_has_and_cut_to_width():
    rows = experiment_rows(SHOWN, HEADLINE) + [Row("long", "segmenter/full", {"dice": 0.9}, "x=" + "1" * 200)]
    header, *lines = experiments_table(rows, width=120).splitlines()
    assert header.split() == ["Experiment", "Run", "Macro-F1", "ECE", "Dice", "Changed", "params"]
    assert [line.split()[:3] for line in lines[:2]] == [["bold-lr", "full/resnet18", "0.7000"],
                                                       ["workspace", "lungs/resnet18", "0.6000"]]
    assert lines[-1].split()[:2] == ["long", "segmenter/full"]  # no macro-F1: last
    assert all(len(line) <= 120 for line in lines) and lines[-1].endswith("…")
    # Lower is better for calibration error.
    by_ece = experiments_table([Row("a", "r", {"ece": 0.3}, ""), Row("b", "r", {"ece": 0.1}, "")], "ece").splitlines()
    assert [line.split()[0] for line in by_ece[1:]] == ["b", "a"]
