"""train and evaluate stages on a tiny prepared dataset: deterministic on CPU, complete outputs."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from cxr.io.arrays import SplitArrays, split_dir
from cxr.metrics.classification import slug
from tests.conftest import (
    checkpoint_path,
    evaluate_arguments,
    evaluation_files,
    evaluation_folders,
    index_source,
    prepare_view,
    run_stage,
    tiny_params,
    train_arguments,
    train_log_path,
    write_params,
)


@pytest.fixture
def prepared(tiny_raw: Path, workdir: Path) -> Path:
    shutil.copytree(tiny_raw, workdir / "data" / "raw" / "synthetic")
    write_params(workdir, tiny_params(**{"train.epochs": 2}))
    index_source(workdir, "synthetic")
    prepare_view(workdir, "full")
    return workdir


def train(root: Path, model: str = "resnet18", dataset: str = "full") -> None:
    run_stage("train", *train_arguments(root, model, dataset))


def evaluate(root: Path, model: str = "resnet18", dataset: str = "full", tested_on: str | None = None) -> None:
    run_stage("evaluate", *evaluate_arguments(root, model, dataset, tested_on))


def evaluate_refused(root: Path, model: str = "resnet18", dataset: str = "full") -> str:
    """Runs evaluate, which must stop; returns its message after checking the metrics file was left as it was."""
    metrics = evaluation_files(root, model, dataset).metrics
    before = metrics.read_bytes() if metrics.exists() else None
    with pytest.raises(SystemExit) as caught:
        evaluate(root, model, dataset)
    assert (metrics.read_bytes() if metrics.exists() else None) == before, "a refused evaluation leaves the metrics alone"
    return str(caught.value)


def test_training_is_deterministic_on_cpu_and_checkpoint_is_complete(prepared):
    train(prepared)
    first = torch.load(checkpoint_path(prepared, "full", "resnet18"), weights_only=True)
    train(prepared)
    second = torch.load(checkpoint_path(prepared, "full", "resnet18"), weights_only=True)
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for key, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][key]), key
    meta = first["meta"]
    assert meta["arch"] == "resnet18" and meta["classes"] == ["COVID-19", "Pneumonia", "Normal"]
    assert meta["image_size"] == 32 and meta["epoch"] in (1, 2)
    assert meta["preprocessing"] == {"view": "full", "image_size": 48, "lung_margin": 0.05}
    assert len(meta["mean"]) == len(meta["std"]) == 3
    log = train_log_path(prepared, "full", "resnet18")
    summary = json.loads((log / "metrics.json").read_text())
    assert summary["best"]["epoch"] == meta["epoch"]
    steps = (log / "plots" / "metrics" / "val" / "macro_f1.tsv").read_text().splitlines()
    assert len(steps) == 1 + 2  # header + one row per epoch


@pytest.mark.slow
def test_evaluate_writes_metrics_predictions_and_plots(prepared):
    train(prepared, "inception_v3")
    evaluate(prepared, "inception_v3")
    metrics = json.loads(evaluation_files(prepared, "inception_v3", "full").metrics.read_text())
    test = SplitArrays.load(split_dir(prepared / "data" / "prepared" / "full", "test"))
    assert metrics["n_test"] == len(test)
    assert 0 <= metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"] <= 1
    out = evaluation_files(prepared, "inception_v3", "full").folder
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions["name"]) == list(test.names)
    probabilities = predictions[["p_covid19", "p_pneumonia", "p_normal"]].to_numpy()
    assert probabilities.sum(axis=1) == pytest.approx(1.0, abs=1e-4)
    assert (predictions["actual"] == predictions["predicted"]).mean() == pytest.approx(metrics["accuracy"])
    assert len(json.loads((out / "confusion.json").read_text())) == len(test)
    assert sorted(p.name for p in (out / "roc").iterdir()) == ["covid19.json", "normal.json", "pneumonia.json"]
    # The figures' data of `dvc plots`: the same curves and confusion records, tagged with their model and class.
    _, _, plots = evaluation_folders(prepared, "full")
    confusion = json.loads((plots / "confusion.json").read_text())
    assert confusion == [{"model": "inception_v3", **record} for record in json.loads((out / "confusion.json").read_text())]
    roc = json.loads((plots / "roc.json").read_text())
    for name in ("COVID-19", "Pneumonia", "Normal"):
        curve = [{"fpr": p["fpr"], "tpr": p["tpr"]} for p in roc if p["class"] == name]
        assert curve == json.loads((out / "roc" / f"{slug(name)}.json").read_text()) and curve, name
    assert {p["model"] for p in roc} == {"inception_v3"}


def test_timm_model_trains_and_evaluates(prepared):
    """A timm classifier is a `timm/<name>` arch in params.yaml away, through the same stages."""
    convnext = {"arch": "timm/convnext_atto", "image_size": 32, "lr": 1e-3, "weights": "none"}
    write_params(prepared, tiny_params(**{"models": [*tiny_params()["models"], "convnext"], "model.convnext": convnext}))
    train(prepared, "convnext")
    evaluate(prepared, "convnext")
    meta = torch.load(checkpoint_path(prepared, "full", "convnext"), weights_only=True)["meta"]
    assert meta["arch"] == "timm/convnext_atto" and meta["model"] == "convnext" and meta["image_size"] == 32
    metrics = json.loads(evaluation_files(prepared, "convnext", "full").metrics.read_text())
    assert metrics["n_test"] == len(SplitArrays.load(split_dir(prepared / "data" / "prepared" / "full", "test")))
    assert 0 <= metrics["accuracy"] <= 1


def test_evaluate_explains_an_unreadable_checkpoint(prepared):
    """An empty (disk full), truncated (killed copy) or foreign file gets the path and the way out, not a traceback."""
    train(prepared)
    evaluate(prepared)
    checkpoint = checkpoint_path(prepared, "full", "resnet18")
    real = checkpoint.read_bytes()
    plain_state_dict = io.BytesIO()
    torch.save(torch.load(checkpoint, weights_only=True)["state_dict"], plain_state_dict)
    for case, content in {"empty": b"", "truncated": real[:len(real) // 2], "foreign": plain_state_dict.getvalue()}.items():
        checkpoint.write_bytes(content)
        message = evaluate_refused(prepared)
        assert str(checkpoint) in message and "dvc repro" in message, (case, message)


def test_evaluate_refuses_a_checkpoint_made_for_another_arch_dataset_or_preprocessing(prepared):
    """Such a checkpoint would load (or even fit) and be scored against this test split as if it were this model."""
    train(prepared)
    evaluate(prepared)
    checkpoint = checkpoint_path(prepared, "full", "resnet18")
    real = checkpoint.read_bytes()

    write_params(prepared, tiny_params(**{"train.epochs": 2, "model.resnet18.arch": "resnet34"}))
    message = evaluate_refused(prepared)
    assert str(checkpoint) in message and "arch = 'resnet18'" in message and "'resnet34'" in message
    write_params(prepared, tiny_params(**{"train.epochs": 2}))

    # As if models/lungs/resnet18.pt had been copied here.
    lungs = torch.load(checkpoint, weights_only=True)
    lungs["meta"]["dataset"] = "lungs"
    torch.save(lungs, checkpoint)
    assert "dataset = 'lungs'" in evaluate_refused(prepared)
    checkpoint.write_bytes(real)

    write_params(prepared, tiny_params(**{"train.epochs": 2, "prepare.image_size": 40}))
    prepare_view(prepared, "full")
    message = evaluate_refused(prepared)
    assert "preprocessing = {" in message and "'image_size': 48" in message and "'image_size': 40" in message


def test_evaluate_refuses_a_model_trained_on_other_classes(prepared):
    train(prepared)
    write_params(prepared, tiny_params(**{"classes": ["COVID-19", "Pneumonia", "Healthy"],
                                          "source.synthetic.class_map": {"Normal": "Healthy"}}))
    message = evaluate_refused(prepared)
    assert "classes = ['COVID-19', 'Pneumonia', 'Normal']" in message and "['COVID-19', 'Pneumonia', 'Healthy']" in message


def test_cross_dataset_test_scores_a_model_on_another_sources_test_split(prepared):
    """The model trained on `full` tested on a second hospital's zip in the Radiography Database layout."""
    run_stage("generate", "--radiography", "--name", "synthetic_hospital2")
    index_source(prepared, "synthetic_hospital2")
    prepare_view(prepared, "hospital2_full", "synthetic_hospital2")
    train(prepared)
    evaluate(prepared, tested_on="hospital2_full")
    across = evaluation_files(prepared, "resnet18", "full", "hospital2_full")
    metrics = json.loads(across.metrics.read_text())
    test = SplitArrays.load(split_dir(prepared / "data" / "prepared" / "hospital2_full", "test"))
    assert metrics["n_test"] == len(test) > 0
    predictions = pd.read_csv(across.predictions)
    assert list(predictions["name"]) == list(test.names)
    # Names are relative to the zip's wrapper folder; Lung_Opacity is not one of our classes.
    assert {name.split("/images/")[0] for name in predictions["name"]} == {"COVID", "Viral Pneumonia", "Normal"}
    assert not evaluation_files(prepared, "resnet18", "full").metrics.exists(), "the model's own test metrics are evaluate's, not touched here"
    # A lungs-view dataset was made otherwise: the full-view model must not be scored on it.
    prepare_view(prepared, "hospital2_lungs", "synthetic_hospital2")
    with pytest.raises(SystemExit, match="preprocessing"):
        evaluate(prepared, tested_on="hospital2_lungs")
