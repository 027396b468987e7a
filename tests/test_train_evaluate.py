"""train and evaluate stages on a tiny prepared dataset: deterministic on CPU, complete outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from cxr.data.arrays import SplitArrays
from cxr.paths import evaluation_dir, metrics_file, model_file, split_file, train_log_dir
from tests.conftest import run_stage, tiny_params, write_params


@pytest.fixture
def prepared(tiny_raw: Path, workdir: Path) -> Path:
    shutil.copytree(tiny_raw, workdir / "data" / "raw" / "synthetic")
    write_params(workdir, tiny_params(**{"train.epochs": 2}))
    run_stage("prepare", "--dataset", "full")
    return workdir


def test_training_is_deterministic_on_cpu_and_checkpoint_is_complete(prepared):
    run_stage("train", "--model", "resnet18", "--dataset", "full")
    first = torch.load(model_file("full", "resnet18"), weights_only=True)
    run_stage("train", "--model", "resnet18", "--dataset", "full")
    second = torch.load(model_file("full", "resnet18"), weights_only=True)
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for key, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][key]), key
    meta = first["meta"]
    assert meta["arch"] == "resnet18" and meta["classes"] == ["COVID-19", "Pneumonia", "Normal"]
    assert meta["image_size"] == 32 and meta["epoch"] in (1, 2)
    assert meta["preprocessing"] == {"view": "full", "image_size": 48, "lung_margin": 0.05}
    assert len(meta["mean"]) == len(meta["std"]) == 3
    log = train_log_dir("full", "resnet18")
    summary = json.loads((log / "metrics.json").read_text())
    assert summary["best"]["epoch"] == meta["epoch"]
    steps = (log / "plots" / "metrics" / "val" / "macro_f1.tsv").read_text().splitlines()
    assert len(steps) == 1 + 2  # header + one row per epoch


def test_evaluate_writes_metrics_predictions_and_plots(prepared):
    run_stage("train", "--model", "inception_v3", "--dataset", "full")
    run_stage("evaluate", "--model", "inception_v3", "--dataset", "full")
    metrics = json.loads(metrics_file("full", "inception_v3").read_text())
    test = SplitArrays.load(split_file("full", "test"))
    assert metrics["n_test"] == len(test)
    assert 0 <= metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"] <= 1
    out = evaluation_dir("full", "inception_v3")
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions["name"]) == list(test.names)
    probabilities = predictions[["p_covid19", "p_pneumonia", "p_normal"]].to_numpy()
    assert probabilities.sum(axis=1) == pytest.approx(1.0, abs=1e-4)
    assert (predictions["actual"] == predictions["predicted"]).mean() == pytest.approx(metrics["accuracy"])
    assert len(json.loads((out / "confusion.json").read_text())) == len(test)
    assert sorted(p.name for p in (out / "roc").iterdir()) == ["covid19.json", "normal.json", "pneumonia.json"]


def test_evaluate_refuses_a_model_trained_on_other_classes(prepared):
    run_stage("train", "--model", "resnet18", "--dataset", "full")
    write_params(prepared, tiny_params(**{"classes": ["COVID-19", "Pneumonia", "Healthy"],
                                          "dataset.full.class_folders.Normal": "Healthy",
                                          "dataset.lungs.class_folders.Normal": "Healthy"}))
    with pytest.raises(SystemExit, match="was trained on classes"):
        run_stage("evaluate", "--model", "resnet18", "--dataset", "full")
