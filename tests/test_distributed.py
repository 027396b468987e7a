"""The train stage in two processes under torchrun (DistributedDataParallel, gloo on CPU), against the same
stage in one process on the same data: one checkpoint without `module.` keys, the same logs and metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxr.io.arrays import SplitArrays, split_dir
from tests.conftest import (
    REPO,
    checkpoint_path,
    evaluate_arguments,
    evaluation_files,
    index_source,
    prepare_view,
    run_stage,
    tiny_params,
    train_arguments,
    train_log_path,
    write_params,
)

# With augmentation off, no BatchNorm (ConvNeXt normalises per image), an unweighted loss and an even number of
# training images (none repeated to even out the shards), two processes compute the gradient of one process's
# batch, half each: what is left is the order of float sums. Measured over 2 epochs: training loss 3e-8 apart,
# test probabilities 1e-6 apart (the predictions file's rounding).
TOLERANCE_LOSS = 1e-5
TOLERANCE_P = 1e-4
NO_AUGMENT = {"rotation_degrees": 0, "scale": [1, 1], "translate": 0, "brightness": 0, "contrast": 0, "horizontal_flip": False}
CONVNEXT = {"arch": "timm/convnext_atto", "image_size": 32, "lr": 1e-3, "weights": "none"}


def params(processes: int, model: str = "resnet18", **overrides) -> dict:
    return tiny_params(**{"models": [model], "datasets": ["full"], "train.epochs": 2, "train.processes": processes,
                          **overrides})


def train_and_evaluate(workdir: Path, processes: int, model: str = "resnet18", **overrides) -> tuple[dict, dict, list[float]]:
    """(checkpoint, test metrics, per-epoch training loss) of the train and evaluate stages."""
    write_params(workdir, params(processes, model, **overrides))
    # As DVC runs it: a command, which starts torchrun itself when train.processes > 1.
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    result = subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), *train_arguments(workdir, model, "full")],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_stage("evaluate", *evaluate_arguments(workdir, model, "full"))
    checkpoint = torch.load(checkpoint_path(workdir, "full", model), weights_only=True)
    losses = (train_log_path(workdir, "full", model) / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()[1:]
    metrics = json.loads(evaluation_files(workdir, model, "full").metrics.read_text())
    return checkpoint, metrics, [float(r.split("\t")[1]) for r in losses]


def log_files(workdir: Path) -> list[str]:
    log = train_log_path(workdir, "full", "resnet18")
    return sorted(str(path.relative_to(log)) for path in log.rglob("*") if path.is_file())


@pytest.fixture
def prepared(tiny_raw: Path, workdir: Path) -> Path:
    shutil.copytree(tiny_raw, workdir / "data" / "raw" / "synthetic")
    write_params(workdir, params(1))
    index_source(workdir, "synthetic")
    prepare_view(workdir, "full")
    return workdir


@pytest.mark.slow
@pytest.mark.system
def test_two_gloo_processes_write_what_one_writes(prepared):
    single, single_metrics, single_losses = train_and_evaluate(prepared, 1)
    single_logs = log_files(prepared)
    shutil.rmtree(prepared / "models")
    shutil.rmtree(train_log_path(prepared, "full", "resnet18"))

    double, double_metrics, double_losses = train_and_evaluate(prepared, 2)
    # One checkpoint, written whole by the first process, nothing left beside it.
    assert sorted(path.name for path in (prepared / "models" / "full").iterdir()) == ["resnet18.pt"]
    assert double["state_dict"].keys() == single["state_dict"].keys()
    assert not any(key.startswith("module.") for key in double["state_dict"])
    assert (single["meta"]["processes"], double["meta"]["processes"]) == (1, 2)
    assert log_files(prepared) == single_logs
    assert double_metrics.keys() == single_metrics.keys()
    assert len(double_losses) == len(single_losses) == 2


@pytest.mark.slow
@pytest.mark.system
def test_two_gloo_processes_learn_what_one_learns(prepared):
    train_split = split_dir(prepared / "data" / "prepared" / "full", "train")
    train = SplitArrays.load(train_split)
    even = len(train) - len(train) % 2  # no image repeated to even out the two shards
    SplitArrays(*(np.array(array[:even]) for array in (train.images, train.masks, train.labels, train.names))).save(
        train_split)
    overrides = {"model.convnext": CONVNEXT, "train.augment": NO_AUGMENT, "train.class_balance": "none"}
    _, _, single_losses = train_and_evaluate(prepared, 1, "convnext", **overrides)
    single = pd.read_csv(evaluation_files(prepared, "convnext", "full").predictions)
    _, _, double_losses = train_and_evaluate(prepared, 2, "convnext", **overrides)
    double = pd.read_csv(evaluation_files(prepared, "convnext", "full").predictions)
    columns = [c for c in single.columns if c.startswith("p_")]
    assert max(abs(a - b) for a, b in zip(single_losses, double_losses, strict=True)) < TOLERANCE_LOSS
    assert (single[columns] - double[columns]).abs().max().max() < TOLERANCE_P


def test_a_batch_that_processes_cannot_share_is_refused(prepared):
    write_params(prepared, tiny_params(**{"train.batch_size": 9, "train.processes": 2}))
    with pytest.raises(SystemExit) as refused:
        run_stage("train", *train_arguments(prepared, "resnet18", "full"))
    assert "batch_size 9 must be a multiple of processes 2" in str(refused.value)
    assert not checkpoint_path(prepared, "full", "resnet18").exists()
