"""`cxr predict` on PNG, JPEG and DICOM files: the probabilities evaluate scored for the same films, per-file
errors that leave the other files predicted, models by registry name, and the explanation figures."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxr.cli import main as cxr
from cxr.paths import predictions_file
from tests.conftest import run_stage, tiny_params, write_params
from tests.test_layouts import dicom


def _as_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    Image.open(path).convert("L").save(buffer, format="JPEG", quality=90)
    path.with_suffix(".jpg").write_bytes(buffer.getvalue())
    path.unlink()


def _as_dicom(path: Path) -> None:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 16  # 12-bit stored values
    path.with_suffix(".dcm").write_bytes(dicom(pixels))
    path.unlink()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_raw: Path) -> Path:
    """A full-view resnet18 trained and evaluated on films of which a third are JPEG and a third DICOM."""
    root = tmp_path_factory.mktemp("predict")
    raw = root / "data" / "raw" / "synthetic"
    shutil.copytree(tiny_raw, raw)
    for k, film in enumerate(sorted(raw.glob("*/images/*.png"))):
        (_as_jpeg, _as_dicom, lambda path: None)[k % 3](film)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        write_params(root, tiny_params(**{"generate.images_per_class": 12}))
        for name, args in (("index", ["--source", "synthetic"]), ("prepare", ["--dataset", "full"]),
                           ("train", ["--model", "resnet18", "--dataset", "full"]),
                           ("evaluate", ["--model", "resnet18", "--dataset", "full"])):
            run_stage(name, *args)
    return root


def _predict(capsys, *args: str) -> tuple[int, dict]:
    code = cxr(["predict", *args, "--json"])
    captured = capsys.readouterr()
    # Every failed file is also named on stderr, with its reason.
    result = json.loads(captured.out)
    assert [line for line in captured.err.splitlines() if line.startswith("error: ")] == \
        [f"error: {f['file']}: {f['reason']}" for f in result["failed"]]
    return code, result


def test_predict_gives_evaluates_probabilities_for_png_jpeg_and_dicom_films(trained, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    scored = pd.read_csv(predictions_file("full", "resnet18"))
    assert {Path(name).suffix for name in scored["name"]} == {".png", ".jpg", ".dcm"}, "every format in the test split"
    films = [str(Path("data/raw/synthetic") / name) for name in scored["name"]]
    code, result = _predict(capsys, *films, "--model", "full/resnet18")
    assert code == 0 and not result["failed"] and result["view"] == "full"
    assert [p["file"] for p in result["predictions"]] == films
    columns = [c for c in scored.columns if c.startswith("p_")]
    for prediction, (_, row) in zip(result["predictions"], scored.iterrows()):
        probabilities = np.array(list(prediction["probabilities"].values()))
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-6)
        assert prediction["predicted"] == row["predicted"], prediction["file"]
        # The CSV keeps six decimals.
        np.testing.assert_allclose(probabilities, row[columns].to_numpy(dtype=float), atol=2e-6)
        assert prediction["lungs"] is None, "no segmenter in this folder: no lung check"


def test_a_broken_file_in_a_folder_is_reported_and_the_rest_predicted(trained, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(trained)
    folder = tmp_path / "films"
    folder.mkdir()
    good = sorted(Path("data/raw/synthetic/Normal/images").iterdir())[:2]
    for film in good:
        shutil.copy(film, folder / film.name)
    (folder / "truncated.png").write_bytes(good[0].read_bytes()[:200])
    (folder / "notes.png").write_text("not an image")
    (folder / "readme.txt").write_text("ignored: not an image by its name")
    code, result = _predict(capsys, str(folder), str(tmp_path / "typo"), "--model", "full/resnet18")
    assert code == 1, "a failed file makes the exit status 1"
    assert sorted(Path(p["file"]).name for p in result["predictions"]) == sorted(film.name for film in good)
    failed = {Path(f["file"]).name: f["reason"] for f in result["failed"]}
    assert set(failed) == {"truncated.png", "notes.png", "typo"}
    assert failed.pop("typo") == "no such file or folder"
    assert all("corrupt or not an image" in reason for reason in failed.values())
    assert [Path(name).name for name in result["ignored"]] == ["readme.txt"]

    archive = tmp_path / "films.zip"
    shutil.make_archive(str(archive.with_suffix("")), "zip", folder)
    code, zipped = _predict(capsys, str(archive), "--model", "full/resnet18")
    assert code == 1 and len(zipped["predictions"]) == 2 and len(zipped["failed"]) == 2
    assert [p["probabilities"] for p in zipped["predictions"]] == [p["probabilities"] for p in result["predictions"]]


def test_the_table_and_the_explanation_figures(trained, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(trained)
    film = sorted(Path("data/raw/synthetic/COVID-19/images").glob("*.png"))[0]
    assert cxr(["predict", str(film), "--model", "models/full/resnet18.pt", "--explain", str(tmp_path / "maps")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["file", "predicted", "p(COVID-19)", "p(Pneumonia)", "p(Normal)", "lungs"]
    assert table[1].startswith(str(film)) and "1 predicted, 0 failed" in table[-1]
    figures = list((tmp_path / "maps").iterdir())
    assert [f.name for f in figures] == ["data_raw_synthetic_COVID-19_images_" + film.stem + ".png"]
    assert Image.open(figures[0]).size[0] > 400


def test_models_by_name_and_what_is_missing(trained, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    film = str(sorted(Path("data/raw/synthetic/Normal/images").glob("*.png"))[0])
    with pytest.raises(SystemExit, match="no model 'resnet99'.*<dataset>/<model>"):
        cxr(["predict", film, "--model", "resnet99"])
    assert cxr(["predict", film, "--model", "lungs/resnet18"]) == 2
    assert "models/lungs/resnet18.pt not found" in capsys.readouterr().err
    Path("dvc.yaml").write_text("artifacts:\n  tiny-full:\n    path: models/full/resnet18.pt\n    type: model\n")
    try:
        code, result = _predict(capsys, film, "--model", "tiny-full")
    finally:
        Path("dvc.yaml").unlink()
    assert code == 0 and result["model"] == "models/full/resnet18.pt"
    # A lungs model cannot run without the segmenter that cuts the lungs out: it says so before reading any film.
    saved = torch.load("models/full/resnet18.pt", weights_only=True)
    saved["meta"]["preprocessing"]["view"] = "lungs"
    torch.save(saved, "models/lungs-view.pt")
    assert cxr(["predict", film, "--model", "models/lungs-view.pt"]) == 2
    error = capsys.readouterr().err
    assert "models/segment/segmenter.pt not found" in error and "segment_train" in error
