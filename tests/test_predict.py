"""`cxr predict` on PNG, JPEG and DICOM files: the probabilities evaluate scored for the same films, per-file
errors that leave the other files predicted, models by registry name, and the explanation figures; datasets
in a known layout (their films only), abstentions on films that fail the checks, and strict JSON."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxr.cli import main as cxr
from cxr.predict.run import figure_stem
from tests.conftest import (
    REPO,
    evaluate_arguments,
    evaluation_files,
    index_source,
    prepare_view,
    run_stage,
    tiny_params,
    train_arguments,
    write_params,
)
from tests.standins import dicom


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
        write_params(root, tiny_params(**{"generate.synthetic.images_per_class": 12}))
        index_source(root, "synthetic")
        prepare_view(root, "full")
        run_stage("train", *train_arguments(root, "resnet18", "full"))
        run_stage("evaluate", *evaluate_arguments(root, "resnet18", "full"))
    # A checkout: its dvc.yaml says where the pipeline keeps each model and the segmenter.
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    return root


def _strict(constant: str):
    raise AssertionError(f"{constant} in the JSON: not strict JSON")


def _predict(capsys, *args: str) -> tuple[int, dict]:
    code = cxr(["predict", *args, "--json"])
    captured = capsys.readouterr()
    # Every failed file is also named on stderr, with its reason.
    result = json.loads(captured.out, parse_constant=_strict)
    assert [line for line in captured.err.splitlines() if line.startswith("error: ")] == \
        [f"error: {f['file']}: {f['reason']}" for f in result["failed"]]
    return code, result


def test_predict_gives_evaluates_probabilities_for_png_jpeg_and_dicom_films(trained, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    scored = pd.read_csv(evaluation_files(trained, "resnet18", "full").predictions)
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
    assert all(re.search("corrupt|not an image", reason) and "<_io." not in reason for reason in failed.values())
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
    assert table[0].split() == ["file", "predicted", "p(COVID-19)", "p(Pneumonia)", "p(Normal)", "lungs", "note"]
    assert table[1].startswith(str(film)) and "1 predicted, 0 failed" in table[-1]
    figures = list((tmp_path / "maps").iterdir())
    assert [f.name for f in figures] == [f"{figure_stem(str(film))}.png"]
    assert figures[0].name.startswith(f"data_raw_synthetic_COVID-19_images_{film.stem}_png-")
    assert Image.open(figures[0]).size[0] > 400


def test_models_by_name_and_what_is_missing(trained, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    film = str(sorted(Path("data/raw/synthetic/Normal/images").glob("*.png"))[0])
    with pytest.raises(SystemExit, match="no model 'resnet99'.*<dataset>/<model>"):
        cxr(["predict", film, "--model", "resnet99"])
    assert cxr(["predict", film, "--model", "lungs/resnet18"]) == 2
    assert "models/lungs/resnet18.pt not found" in capsys.readouterr().err
    pipeline = Path("dvc.yaml").read_text()
    Path("dvc.yaml").write_text("artifacts:\n  tiny-full:\n    path: models/full/resnet18.pt\n    type: model\n")
    try:
        code, result = _predict(capsys, film, "--model", "tiny-full")
    finally:
        Path("dvc.yaml").write_text(pipeline)
    assert code == 0 and result["model"] == "models/full/resnet18.pt"
    # A lungs model cannot run without the segmenter that cuts the lungs out: it says so before reading any film.
    saved = torch.load("models/full/resnet18.pt", weights_only=True)
    saved["meta"]["preprocessing"]["view"] = "lungs"
    torch.save(saved, "models/lungs-view.pt")
    assert cxr(["predict", film, "--model", "models/lungs-view.pt"]) == 2
    error = capsys.readouterr().err
    assert "models/segment/segmenter.pt not found" in error and "segment_train" in error


def test_where_a_checkpoint_lies_counts_in_a_checkout_only(trained, monkeypatch, capsys, tmp_path):
    """In a checkout the folder the pipeline keeps a dataset's models in says which data a checkpoint was made for;
    outside one, a model is given by its path, and its folder means nothing."""
    monkeypatch.chdir(tmp_path)
    film = str(sorted((trained / "data" / "raw" / "synthetic" / "Normal" / "images").glob("*.png"))[0])
    (tmp_path / "models" / "lungs").mkdir(parents=True)
    shutil.copy(trained / "models" / "full" / "resnet18.pt", tmp_path / "models" / "lungs" / "resnet18.pt")
    shutil.copy(trained / "dvc.yaml", tmp_path / "dvc.yaml")
    assert cxr(["predict", film, "--model", "lungs/resnet18", "--no-segmenter"]) == 2
    assert "trained on full (full view) but lies in models/lungs/, where the pipeline keeps the models of lungs" in \
        capsys.readouterr().err

    (tmp_path / "dvc.yaml").unlink()
    with pytest.raises(SystemExit, match="full/resnet18 names a model by where the pipeline trains it, but no dvc.yaml"):
        cxr(["predict", film, "--model", "full/resnet18"])
    code, result = _predict(capsys, film, "--model", "models/lungs/resnet18.pt")
    assert code == 0 and result["model"] == "models/lungs/resnet18.pt" and result["trained_on"] == "full"
    assert result["predictions"][0]["lungs"] is None, "no segmenter outside a checkout unless given"


def _radiography(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """A tiny Radiography Database zip with its metadata sheets (one of them broken), its films and masks."""
    from cxr.synthetic.generator import write_radiography_zip

    archive = tmp_path / "radiography.zip"
    write_radiography_zip(archive, seed=3, images_per_class=1, image_size=96, mask_size=80, progress=False)
    with zipfile.ZipFile(archive, "a") as packed:
        names = packed.namelist()
        packed.writestr("COVID-19_Radiography_Dataset/COVID.metadata.csv", "FILE NAME,URL\nCOVID-1,https://x\n")
        packed.writestr("COVID-19_Radiography_Dataset/Normal.metadata.xlsx", b"not a spreadsheet")
    films = [f"{archive}/{n}" for n in names if "/images/" in n]
    masks = [f"{archive}/{n}" for n in names if "/masks/" in n]
    assert len(films) == len(masks) == 4
    return archive, sorted(films), sorted(masks)


def test_a_dataset_folder_or_zip_gives_its_films_only(trained, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(trained)
    archive, films, masks = _radiography(tmp_path)
    code, result = _predict(capsys, str(archive), "--model", "full/resnet18")
    assert code == 0 and result["layouts"] == {str(archive): "radiography"}
    assert [p["file"] for p in result["predictions"]] == films
    assert all(p["predicted"] in result["classes"] for p in result["predictions"])
    assert result["skipped_masks"] == masks and result["skipped_outside_layout"] == []
    assert [Path(name).name for name in result["ignored"]] == ["COVID.metadata.csv", "Normal.metadata.xlsx"]

    folder = tmp_path / "unpacked"
    shutil.unpack_archive(archive, folder)
    assert cxr(["predict", str(folder), "--model", "full/resnet18"]) == 0
    captured = capsys.readouterr()
    # The broken sheet is warned about on stderr, never in the answer.
    assert "cannot read metadata" in captured.err and "cannot read metadata" not in captured.out
    table = captured.out.splitlines()
    expected = [f"{folder}/{film[len(str(archive)) + 1:]}" for film in films]
    assert len(table) == len(expected) + 2 and all(row.startswith(name) for row, name in zip(table[1:-1], expected))
    assert "4 predicted, 0 failed, 0 abstained, 2 ignored (not images), 4 lung masks skipped" in table[-1]
    assert "radiography" in table[-1]


def test_a_blank_film_abstains_unless_a_class_is_forced(trained, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(trained)
    film = str(sorted(Path("data/raw/synthetic/Normal/images").glob("*.png"))[0])
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64), 17, dtype=np.uint8)).save(blank)
    code, result = _predict(capsys, film, str(blank), "--model", "full/resnet18")
    assert code == 0, "an abstention is no failure"
    good, abstained = result["predictions"]
    assert good["predicted"] in result["classes"] and good["abstained"] is None
    assert abstained["predicted"] is None and abstained["probabilities"] is None
    assert abstained["abstained"] == "constant image (every pixel 17): no X-ray to classify"
    assert sum(abstained["unreliable_probabilities"].values()) == pytest.approx(1.0, abs=1e-6)

    assert cxr(["predict", film, str(blank), "--model", "full/resnet18"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:5] == [str(blank), "ABSTAIN", "-", "-", "-"] and "abstained: constant image" in " ".join(row)

    code, forced = _predict(capsys, str(blank), "--model", "full/resnet18", "--force-class")
    [prediction] = forced["predictions"]
    assert code == 0 and prediction["abstained"] is None and prediction["predicted"] in forced["classes"]
    assert prediction["probabilities"] == abstained["unreliable_probabilities"]
    assert prediction["notes"] == [abstained["abstained"]]


def test_a_lungs_model_abstains_when_the_segmenter_finds_no_lungs(trained, monkeypatch, capsys, tmp_path):
    """The cascade on a film whose mask fails the anatomical checks; the same film with two lungs is classified."""
    from cxr.predict.run import Segmenter

    monkeypatch.chdir(trained)
    saved = torch.load("models/full/resnet18.pt", weights_only=True)
    saved["meta"]["preprocessing"]["view"] = "lungs"
    torch.save(saved, tmp_path / "lungs-view.pt")
    monkeypatch.setattr(Segmenter, "load", classmethod(lambda cls, path, confidence, device: cls(None, 64, 1, 0.25)))
    film = str(sorted(Path("data/raw/synthetic/COVID-19/images").glob("*.png"))[0])
    args = (film, "--model", str(tmp_path / "lungs-view.pt"))

    def two_lungs(net, pixels, *settings):
        mask = np.zeros(pixels.shape, dtype=bool)
        height, width = pixels.shape
        mask[height // 5:4 * height // 5, width // 6:5 * width // 12] = True
        mask[height // 5:4 * height // 5, 7 * width // 12:5 * width // 6] = True
        return mask

    monkeypatch.setattr("cxr.segment.films.film_mask", two_lungs)
    code, result = _predict(capsys, *args)
    [plausible] = result["predictions"]
    assert code == 0 and plausible["lungs"]["plausible"] and plausible["predicted"] in result["classes"]

    monkeypatch.setattr("cxr.segment.films.film_mask", lambda net, pixels, *rest: np.zeros(pixels.shape, dtype=bool))
    code, result = _predict(capsys, *args)
    [prediction] = result["predictions"]
    assert code == 0 and prediction["predicted"] is None and not prediction["lungs"]["plausible"]
    assert prediction["abstained"] == "implausible lung segmentation: no lungs found"
    code, result = _predict(capsys, *args, "--force-class")
    [forced] = result["predictions"]
    assert code == 0 and forced["predicted"] in result["classes"]
    assert forced["notes"] == ["implausible lung segmentation: no lungs found"]


def test_json_stays_strict_for_a_mix_of_good_bad_skipped_and_abstained_files(trained, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(trained)
    archive, films, masks = _radiography(tmp_path)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((40, 50), dtype=np.uint8)).save(blank)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(films[0].replace(f"{archive}/", "")).name.encode())  # a name, not an image
    code, result = _predict(capsys, str(archive), str(blank), str(truncated), str(tmp_path / "typo.png"),
                            "--model", "full/resnet18")
    assert code == 1, "failed files make the exit status 1; the abstention does not"
    assert [p["file"] for p in result["predictions"]] == [*films, str(blank)]
    assert [p["predicted"] is None for p in result["predictions"]] == [False] * len(films) + [True]
    assert [f["file"] for f in result["failed"]] == [str(tmp_path / "typo.png"), str(truncated)]
    assert result["skipped_masks"] == masks and len(result["ignored"]) == 2
