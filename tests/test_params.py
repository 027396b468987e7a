"""params.yaml validation: every mistake stops with one message naming the key and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stages.params import ParamsError, load_params
from tests.conftest import REPO, default_params, tiny_params, write_params


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.models == ["resnet18", "resnet34", "densenet161", "inception_v3"]
    assert params.datasets == ["full", "lungs"]
    assert {params.dataset[name].view for name in params.datasets} == {"full", "lungs"}


def _error(tmp_path, params: dict) -> str:
    with pytest.raises(ParamsError) as caught:
        load_params(write_params(tmp_path, params))
    return str(caught.value)


def test_unknown_model_name(tmp_path):
    params = default_params()
    params["models"].append("vgg16")
    assert "unknown model 'vgg16'" in _error(tmp_path, params)


def test_unknown_architecture(tmp_path):
    params = default_params()
    params["model"]["resnet18"]["arch"] = "resnet1800"
    message = _error(tmp_path, params)
    assert "model.resnet18" in message and "unknown arch 'resnet1800'" in message and "inception_v3" in message


def test_unknown_dataset(tmp_path):
    params = default_params()
    params["datasets"].append("kermany")
    assert "dataset 'kermany' is listed in `datasets` but has no `dataset.kermany` entry" in _error(tmp_path, params)


def test_inception_input_too_small(tmp_path):
    params = default_params()
    params["model"]["inception_v3"]["image_size"] = 74
    message = _error(tmp_path, params)
    assert "model.inception_v3" in message and "too small for inception_v3" in message and "75" in message


def test_class_folder_mapped_to_nothing(tmp_path):
    params = default_params()
    params["dataset"]["full"]["class_folders"]["Lung_Opacity"] = None
    assert "folder 'Lung_Opacity' is mapped to nothing" in _error(tmp_path, params)


def test_class_without_any_folder(tmp_path):
    params = default_params()
    del params["dataset"]["lungs"]["class_folders"]["Pneumonia"]
    assert "no folder is mapped to class 'Pneumonia'" in _error(tmp_path, params)


def test_folder_mapped_to_unknown_class(tmp_path):
    params = default_params()
    params["dataset"]["full"]["class_folders"]["Normal"] = "Healthy"
    assert "'Healthy', which is not in classes" in _error(tmp_path, params)


def test_split_fractions_must_add_up(tmp_path):
    params = default_params()
    params["prepare"]["split"] = {"train": 0.7, "val": 0.2, "test": 0.2}
    assert "must add up to 1" in _error(tmp_path, params)


def test_misspelt_key_is_rejected(tmp_path):
    params = default_params()
    params["train"]["epoch"] = params["train"].pop("epochs")
    message = _error(tmp_path, params)
    assert "train.epoch" in message and "train.epochs" in message


def test_stage_stops_before_any_work(workdir):
    """A stage given bad params exits with the message and writes nothing."""
    params = tiny_params()
    params["model"]["inception_v3"]["image_size"] = 64
    write_params(workdir, params)
    result = subprocess.run([sys.executable, "-m", "stages.generate"], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": ""}, cwd=workdir)
    assert result.returncode == 2
    assert "too small for inception_v3" in result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["params.yaml"]


def test_stage_rejects_model_not_in_params(workdir):
    write_params(workdir, tiny_params())
    result = subprocess.run([sys.executable, "-m", "stages.train", "--model", "vgg16", "--dataset", "full"],
                            capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""}, cwd=workdir)
    assert result.returncode == 2
    assert "--model 'vgg16' is not listed in `models`" in result.stderr
