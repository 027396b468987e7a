"""params.yaml validation: each stage checks only its own keys, and every mistake stops with one line naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cxr.cli.check import section_schemas
from cxr.params import Classes, ParamsError, load_params
from tests.conftest import REPO, default_params, pipeline_arguments, tiny_params, write_params


def every_section(params: dict) -> dict:
    """The schema of every key of params.yaml, as the stages together read them (what `cxr check` validates)."""
    return section_schemas(params)


def test_repository_params_are_valid():
    values = load_params(every_section(default_params()), REPO / "params.yaml")
    # Every name a list gives has its entry, which load_params validated.
    assert values["models"] and {f"model.{name}" for name in values["models"]} <= set(values)
    assert {f"dataset.{name}" for name in [*values["datasets"], *values["probe"].datasets]} <= set(values)
    # The default run compares the full and the lungs view, and probes the outside one.
    assert {values[f"dataset.{name}"].view for name in values["datasets"]} == {"full", "lungs"}
    assert "outside" in {values[f"dataset.{name}"].view for name in values["probe"].datasets}
    # Both trained datasets are views of one source, so they share its split.
    assert len({values[f"dataset.{name}"].source for name in values["datasets"]}) == 1


def _error(tmp_path, params: dict, schemas: dict | None = None) -> str:
    with pytest.raises(ParamsError) as caught:
        load_params(schemas or every_section(default_params()), write_params(tmp_path, params))
    return str(caught.value)


def test_unknown_architecture(tmp_path):
    params = default_params()
    params["model"]["resnet18"]["arch"] = "resnet1800"
    message = _error(tmp_path, params)
    assert "model.resnet18: unknown arch 'resnet1800'" in message and "inception_v3" in message and "timm/" in message


def test_unknown_timm_model(tmp_path):
    params = default_params()
    params["model"]["resnet18"]["arch"] = "timm/not_a_model"
    assert "model.resnet18: unknown timm model 'not_a_model'" in _error(tmp_path, params)


def test_missing_model_entry(tmp_path):
    params = default_params()
    del params["model"]["resnet34"]
    assert "model.resnet34: missing" in _error(tmp_path, params)


def test_inception_input_too_small(tmp_path):
    params = default_params()
    params["model"]["inception_v3"]["image_size"] = 74
    message = _error(tmp_path, params)
    assert "model.inception_v3" in message and "too small for inception_v3" in message and "75" in message


def test_class_map_to_unknown_class(tmp_path):
    params = default_params()
    params["source"]["synthetic"]["class_map"] = {"Normal": "Healthy"}
    message = _error(tmp_path, params)
    assert "source.synthetic: class_map: 'Normal' is mapped to 'Healthy', which is not in classes" in message


def test_unknown_layout_and_bad_patient_pattern(tmp_path):
    params = default_params()
    params["source"]["synthetic"]["layout"] = "nih"
    params["source"]["synthetic"]["patient_id_pattern"] = "p\\d+"
    message = _error(tmp_path, params)
    assert "source.synthetic.layout: Input should be 'auto', 'radiography'" in message
    assert "source.synthetic.patient_id_pattern: needs a group" in message


def test_cross_test_of_an_untrained_dataset(tmp_path):
    params = default_params()
    params["cross_tests"] = [{"trained_on": "hospital2_full", "tested_on": "full"}]
    assert "cross_tests.0: trained_on 'hospital2_full' is not in datasets" in _error(tmp_path, params)


def test_split_fractions_must_add_up(tmp_path):
    params = default_params()
    params["index"]["split"] = {"train": 0.7, "val": 0.2, "test": 0.2}
    assert "index.split: train + val + test = 1.1, must add up to 1" in _error(tmp_path, params)


def test_misspelt_key_is_rejected(tmp_path):
    params = default_params()
    params["train"]["epoch"] = params["train"].pop("epochs")
    message = _error(tmp_path, params)
    assert "train.epoch: Extra inputs are not permitted" in message and "train.epochs: Field required" in message


def test_all_problems_are_reported_at_once_one_line_each(tmp_path):
    params = default_params()
    params["device"] = "tpu"
    params["classes"] = ["COVID-19", "COVID-19", "Normal"]
    params["evaluate"]["bootstrap_resamples"] = 5
    lines = _error(tmp_path, params).splitlines()[1:]
    assert [line.split(":")[0] for line in lines if not line.startswith("  - dataset.")] == [
        "  - classes", "  - device", "  - evaluate.bootstrap_resamples"]


@pytest.mark.parametrize("content, expected", [
    (b"\xff\xfe\x00binary\x00\x89PNG", "is not a text file"),
    (b"- just\n- a list\n", "must be a mapping"),
    (b"train: [unclosed\n", "is not valid YAML"),
])
def test_a_params_file_that_is_not_params_gives_one_line(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ParamsError, match=expected) as caught:
        load_params({"classes": Classes}, path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_params_folder_gives_one_line(tmp_path):
    (tmp_path / "params.yaml").mkdir()
    with pytest.raises(ParamsError, match="is a folder, not a params file"):
        load_params({"classes": Classes}, tmp_path / "params.yaml")


def _stage(workdir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "stages" / args[0]), *args[1:]], capture_output=True,
                          text=True, cwd=workdir)


def test_stage_stops_before_any_work(workdir):
    """A stage given bad params exits with the message and writes nothing."""
    params = tiny_params()
    params["generate"]["synthetic"]["images_per_class"] = 0
    write_params(workdir, params)
    result = _stage(workdir, "generate.py", "--name", "synthetic")
    assert result.returncode == 1
    assert ("error: params.yaml is invalid:\n  - generate.synthetic.images_per_class: Input should be greater than or "
            "equal to 1") \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["params.yaml"]


def test_a_typo_in_one_stage_section_does_not_stop_another_stage(workdir):
    params = tiny_params(**{"generate.synthetic.images_per_class": 4})
    params["train"]["epoch"] = 3  # train's problem, not generate's
    write_params(workdir, params)
    assert _stage(workdir, "generate.py", "--name", "synthetic").returncode == 0
    result = _stage(workdir, "train.py", *pipeline_arguments("train", model="resnet18", dataset="full"))
    assert result.returncode == 1 and "train.epoch: Extra inputs are not permitted" in result.stderr


def test_stage_rejects_model_not_in_params(workdir):
    write_params(workdir, tiny_params())
    result = _stage(workdir, "train.py", *pipeline_arguments("train", model="vgg16", dataset="full"))
    assert result.returncode == 1
    assert "model.vgg16: missing" in result.stderr and "Traceback" not in result.stderr


def test_params_folder_stops_a_stage_with_one_line(workdir):
    (workdir / "params.yaml").mkdir()
    result = _stage(workdir, "report.py", *pipeline_arguments("report"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("error: params.yaml is a folder, not a params file: remove it and restore "
                                     "params.yaml (`git checkout params.yaml`)")
