"""`cxr preset`: one command switches params.yaml to a documented preset, keeping its comments and validity."""

from __future__ import annotations

import shutil

import pytest
import yaml

from cxr import cli
from cxr.params import load_params
from tests.conftest import REPO
from tests.test_params import every_section


@pytest.fixture
def checkout(workdir):
    shutil.copy(REPO / "params.yaml", workdir / "params.yaml")
    shutil.copytree(REPO / "presets", workdir / "presets")
    return workdir


def test_study_preset_sets_the_studys_settings_on_the_radiography_database(checkout, capsys):
    assert cli.main(["preset", "study"]) == 0
    text = (checkout / "params.yaml").read_text()
    params = yaml.safe_load(text)
    # The study: 224 px, 299 for InceptionV3, ImageNet weights, 5 epochs, lr 1e-3 (docs/seed-study notes).
    for name, entry in params["model"].items():
        assert entry["image_size"] == (299 if name == "inception_v3" else 224)
        assert entry["weights"] == "imagenet" and entry["lr"] == pytest.approx(1e-3)
    assert params["train"]["epochs"] == 5 and params["prepare"]["image_size"] == 299
    # From its base preset: both views of the downloaded Radiography Database, nothing synthetic trained on.
    assert params["source"] == {"radiography": {"path": "data/raw/COVID-19_Radiography_Dataset.zip", "layout": "radiography",
                                                "class_map": {}, "patient_id_pattern": None, "own_split": False}}
    assert {name: entry["source"] for name, entry in params["dataset"].items()} == {"full": "radiography",
                                                                                   "lungs": "radiography"}
    assert params["cross_tests"] == []
    # Round trip: comments and untouched keys survive, and every stage's keys still validate.
    assert "# Every knob of the pipeline." in text and "# anatomy is not mirror-symmetric" in text
    assert params["evaluate"] == yaml.safe_load((REPO / "params.yaml").read_text())["evaluate"]
    load_params(every_section(params), checkout / "params.yaml")
    assert "applied preset study" in capsys.readouterr().out


def test_set_overrides_a_preset_key_and_bad_input_is_refused(checkout, capsys):
    folder = "data/raw/COVID-19_Radiography_Dataset"
    assert cli.main(["preset", "radiography", "--set", f"source.radiography.path={folder}",
                     "--set", "train.epochs=4"]) == 0
    params = yaml.safe_load((checkout / "params.yaml").read_text())
    assert params["source"]["radiography"]["path"] == folder and params["train"]["epochs"] == 4
    before = (checkout / "params.yaml").read_bytes()
    assert cli.main(["preset", "nih"]) == 2
    error = capsys.readouterr().err
    assert "no preset 'nih'" in error and "radiography, study" in error
    assert cli.main(["preset", "study", "--set", "train.epochs"]) == 2
    assert (checkout / "params.yaml").read_bytes() == before, "a refused preset leaves params.yaml alone"


def test_listing_names_every_preset(checkout, capsys):
    assert cli.main(["preset"]) == 0
    listed = capsys.readouterr().out
    assert {line.split(":")[0] for line in listed.splitlines()} == {p.stem for p in (REPO / "presets").glob("*.yaml")}
