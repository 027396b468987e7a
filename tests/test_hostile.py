"""Hostile and broken inputs, one row per case: each is refused with a one-line reason, or skipped with the
file's name and reason; none runs code, none gives a traceback, none exits 0 with a wrong or empty answer.

Quick tier: every file is made here, small; the checkpoint is an untrained resnet18 at 32 px.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cxr.io.sources as sources
from cxr.cli import main as cxr
from cxr.data.index import SourceIndexError, build_index, index_file, write_index
from cxr.data.params import IndexParams, PrepareParams, SourceParams
from cxr.io.images import decode_image
from cxr.io.pixels import UnreadableImage
from cxr.models.checkpoints import save_checkpoint
from cxr.models.params import ModelParams
from cxr.models.registry import WeightsError, build_model, read_state_dict
from cxr.params import Device, stage_params
from cxr.segment.train import SegmenterError, read_ultralytics_file
from tests.conftest import REPO
from tests.standins import CLASSES, INDEX, class_folders_tree, dicom, write_folder, write_zip

FILM = (np.add.outer(np.arange(64), np.arange(64)) * 16).astype(np.uint16)  # a 12-bit gradient


class RunsCode:
    """A pickle that runs a command when loaded: what a file from an attacker would hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# name, file name, bytes, what the reason must say
DECODE_CASES = [
    ("16-bit data in an 8-bit allocation", "a.dcm", lambda: dicom(FILM, BitsAllocated=8, BitsStored=8, HighBit=7),
     r"DICOM|decoded"),
    ("1-bit allocation", "b.dcm", lambda: dicom(FILM, BitsAllocated=1, BitsStored=1, HighBit=0), r"DICOM|decoded"),
    ("a window of width 0", "c.dcm", lambda: dicom(FILM, WindowCenter=2048, WindowWidth=0), r"DICOM|decoded"),
    ("garbage named .dcm", "d.dcm", lambda: b"garbage, not a film " * 20, r"not a DICOM file"),
    ("garbage named .png", "e.png", lambda: b"garbage, not a film " * 20, r"not an image"),
]


@pytest.mark.parametrize("case, name, make, reason", DECODE_CASES, ids=[c[0] for c in DECODE_CASES])
def test_a_broken_file_is_one_files_problem_with_its_reason(case, name, make, reason):
    try:
        decoded = decode_image(make(), name)
    except UnreadableImage as err:
        assert "Traceback" not in str(err) and "\n" not in str(err)
        assert "<_io." not in str(err), "a Python repr is no reason"
        assert re.search(reason, str(err)), str(err)
    else:  # decoded: then it must be a real image of the stored size, not garbage pixels
        assert decoded.pixels.shape == FILM.shape and decoded.pixels.dtype == np.uint8, case


def test_broken_dicoms_in_a_folder_are_skipped_by_name_and_the_rest_predicted(checkpoint, tmp_path, capsys):
    folder = tmp_path / "films"
    folder.mkdir()
    for _, name, make, _ in DECODE_CASES:
        (folder / name).write_bytes(make())
    Image.fromarray((FILM // 16).astype(np.uint8)).save(folder / "good.png")
    code = cxr(["predict", str(folder), "--model", str(checkpoint), "--no-segmenter"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    predicted = [line for line in captured.out.splitlines() if "good.png" in line]
    assert predicted and code == 1, (code, captured.out, captured.err)  # 1: some files failed, the rest predicted
    for _, name, _, _ in DECODE_CASES:
        if name in captured.err:
            assert f"error: {folder / name}: " in captured.err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained full-view resnet18 checkpoint at 32 px, as train writes them."""
    path = tmp_path_factory.mktemp("hostile") / "model.pt"
    torch.manual_seed(0)
    meta = {"model": "resnet18", "arch": "resnet18", "dataset": "full", "classes": ["COVID-19", "Pneumonia", "Normal"],
            "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
            "preprocessing": {"view": "full", "image_size": 32, "lung_margin": 0.0}}
    save_checkpoint(path, build_model("resnet18", 3, 32), meta)
    return path


def _changed(checkpoint: Path, target: Path, change) -> Path:
    saved = torch.load(checkpoint, weights_only=True)
    change(saved)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(saved, target)
    return target


def _nan_weights(saved: dict) -> None:
    saved["state_dict"]["fc.weight"].fill_(float("nan"))


CHECKPOINT_CASES = [
    ("meta not a mapping", "x.pt", lambda s: s.update(meta=["resnet18"]), r"metadata is a list, not a mapping"),
    ("unknown arch", "x.pt", lambda s: s["meta"].update(arch="resnet999"), r"x\.pt.*(arch|architecture)"),
    ("no preprocessing", "x.pt", lambda s: s["meta"].pop("preprocessing"), r"x\.pt: its metadata has no valid 'preprocessing'"),
    ("a view nobody knows", "x.pt", lambda s: s["meta"]["preprocessing"].update(view="sideways"), r"no known view"),
    ("one channel's statistics for three", "x.pt", lambda s: s["meta"].update(mean=[0.5]), r"mean"),
    ("NaN weights", "x.pt", _nan_weights, r"x\.pt has non-finite weights"),
    ("a full-view model placed under models/lungs/", "models/lungs/resnet18.pt", lambda s: None,
     r"trained on full \(full view\) but lies in models/lungs/"),
]


@pytest.mark.parametrize("case, name, change, reason", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_a_checkpoint_that_cannot_be_trusted_is_refused_in_one_line(case, name, change, reason, checkpoint, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "dvc.yaml", tmp_path)  # in a checkout, whose train stage says where each dataset's models lie
    film = tmp_path / "film.png"
    Image.fromarray((FILM // 16).astype(np.uint8)).save(film)
    bad = _changed(checkpoint, Path(name), change)
    assert cxr(["predict", str(film), "--model", str(bad), "--no-segmenter", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", "no answer at all, not a wrong one"
    error = captured.err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    assert re.search(reason, error[0]), error[0]


def test_the_untouched_checkpoint_predicts(checkpoint, tmp_path, monkeypatch, capsys):
    """The control for the rows above: the same film and checkpoint, unchanged, give a class."""
    film = tmp_path / "film.png"
    Image.fromarray((FILM // 16).astype(np.uint8)).save(film)
    assert cxr(["predict", str(film), "--model", str(checkpoint), "--no-segmenter"]) == 0


def _malicious(path: Path, marker: Path, wrap) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wrap(RunsCode(marker)), path)
    return path


@pytest.mark.parametrize("where", ["classifier", "segmenter"])
def test_a_pickle_that_runs_code_is_refused_as_unsafe_and_nothing_runs(where, checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    film = tmp_path / "film.png"
    Image.fromarray((FILM // 16).astype(np.uint8)).save(film)
    if where == "classifier":
        model = _malicious(tmp_path / "evil.pt", marker, lambda payload: {"format": 1, "meta": payload})
        args = ["--model", str(model), "--no-segmenter"]
    else:  # planted where predict looks for the segmenter by default in a checkout, next to a plain full-view model
        shutil.copy(REPO / "dvc.yaml", tmp_path)
        _malicious(tmp_path / "models/segment/segmenter.pt", marker, lambda payload: {"model": payload, "cxr": {}})
        args = ["--model", str(checkpoint)]
    code = cxr(["predict", str(film), *args])
    error = capsys.readouterr().err
    assert not marker.exists(), "the file's command ran"
    assert code == 2 and "refused as unsafe" in error and "Traceback" not in error, error


def test_start_weights_that_run_code_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _malicious(tmp_path / "start.pt", marker, lambda payload: {"state_dict": payload})
    with pytest.raises(WeightsError, match="refused as unsafe"):
        read_state_dict(evil)
    evil_yolo = _malicious(tmp_path / "yolov8n-seg.pt", marker, lambda payload: {"model": payload})
    with pytest.raises(SegmenterError, match="refused as unsafe"):
        read_ultralytics_file(evil_yolo)
    assert not marker.exists()



@pytest.mark.parametrize("device, reason", [("tpu", r"unknown device 'tpu'|must be auto, cpu"), ("cuda:99", r"'cuda:99' asked for")])
def test_a_device_this_machine_lacks_is_one_line(device, reason, checkpoint, tmp_path, capsys):
    film = tmp_path / "film.png"
    Image.fromarray((FILM // 16).astype(np.uint8)).save(film)
    assert cxr(["predict", str(film), "--model", str(checkpoint), "--no-segmenter", "--device", device]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --device: ") and "\n" not in error and re.search(reason, error), error
    (tmp_path / "params.yaml").write_text(f"device: {device}\n")
    with pytest.raises(SystemExit, match=rf"(?s)error: .*device.*({reason})"):
        stage_params({"device": Device}, tmp_path / "params.yaml")


# --- sources: what the index stage, `cxr inspect` and `cxr predict` read ---------------------------------------


def _index(folder: Path):
    return build_index("src", SourceParams(path=str(folder)), INDEX, CLASSES)


def test_a_zip_bomb_member_is_skipped_unread_by_its_declared_size(tmp_path, capsys):
    tree = class_folders_tree(n=4)
    archive = write_zip(tree, tmp_path / "films.zip")
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("Normal/bomb.png", b"\0" * (4 * 2**20))  # 4 MiB that deflate to a few kB
    built = _index(archive)
    bomb_row = next(row for row in built.rows if row["name"] == "Normal/bomb.png")
    assert bomb_row["status"] == "unreadable image" and "zip bomb" in bomb_row["detail"]
    assert sum(row["status"] == "ok" for row in built.rows) == 12


def test_predict_skips_a_zip_bomb_with_its_reason(checkpoint, tmp_path, capsys):
    archive = tmp_path / "films.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as films:
        films.writestr("good.png", _png_bytes())
        films.writestr("bomb.png", b"\0" * (4 * 2**20))
    assert cxr(["predict", str(archive), "--model", str(checkpoint), "--no-segmenter", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert [Path(p["file"]).name for p in result["predictions"]] == ["good.png"]
    assert [(Path(f["file"]).name, "zip bomb" in f["reason"]) for f in result["failed"]] == [("bomb.png", True)]


def test_a_file_above_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    film = tmp_path / "film.png"
    film.write_bytes(_png_bytes())
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", film.stat().st_size - 1)
    with pytest.raises(OSError, match=r"film\.png is .* MiB, more than"):
        sources.read_file(film)


def test_a_file_name_that_is_not_utf8_is_skipped_and_the_index_written(tmp_path):
    folder = write_folder(class_folders_tree(n=4), tmp_path / "films")
    (folder / "Normal").joinpath(os.fsdecode(b"caf\xe9.png")).write_bytes(_png_bytes())
    built = _index(folder)
    odd = [row for row in built.rows if row["status"] == "unusable file name"]
    assert len(odd) == 1 and odd[0]["name"] == "Normal/caf\\xe9.png" and "rename" in odd[0]["detail"]
    write_index(tmp_path / "index", tmp_path / "report.json", built)  # the CSV write that crashed
    assert "caf\\xe9.png" in index_file(tmp_path / "index").read_text(encoding="utf-8")


def test_a_folder_that_cannot_be_listed_stops_the_index_by_name(tmp_path, monkeypatch):
    folder = write_folder(class_folders_tree(n=4), tmp_path / "films")
    walk = os.walk

    def denied(top, onerror=None, **kwargs):
        for root, dirs, files in walk(top, onerror=onerror, **kwargs):
            if Path(root).name == "Pneumonia":  # as os.walk does for a folder it may not list: skip, or tell onerror
                onerror(PermissionError(13, "Permission denied", root))
                continue
            yield root, dirs, files

    monkeypatch.setattr(sources.os, "walk", denied)
    with pytest.raises(SourceIndexError, match=r"cannot list .*films/Pneumonia \(Permission denied\)"):
        _index(folder)


def test_classes_matching_no_folder_stop_the_index(tmp_path):
    folder = write_folder({f"Cats/img-{i}.png": _png_bytes(i) for i in range(3)}, tmp_path / "pets")
    with pytest.raises(SourceIndexError, match=r"no usable image of COVID-19, Pneumonia, Normal; class folders found: Cats"):
        _index(folder)


def test_a_class_whose_files_are_all_unreadable_stops_the_index(tmp_path):
    tree = class_folders_tree(n=4)
    tree.update({name: b"not a film" for name in tree if name.startswith("Pneumonia/")})
    with pytest.raises(SourceIndexError, match=r"class Pneumonia: no usable image in Pneumonia \(unreadable image 4\)"):
        _index(write_folder(tree, tmp_path / "films"))


# --- params: refused with the key named, before any work ----------------------------------------------------

PARAMS_CASES = [
    ("an infinite learning rate", "model:\n  resnet18: {arch: resnet18, image_size: 64, lr: .inf}\n", {"model.resnet18": ModelParams},
     r"model\.resnet18\.lr: not a finite number"),
    ("a seed given as text", "index: {seed: '42', split: {train: 0.7, val: 0.15, test: 0.15}, near_duplicate_distance: 12, "
     "max_image_pixels: 50000000}\n", {"index": IndexParams}, r"index\.seed: Input should be a valid integer"),
    ("a key given twice", "prepare: {image_size: 64, lung_margin: 0.1}\nprepare: {image_size: 99999, lung_margin: 0.1}\n",
     {"prepare": PrepareParams}, r"'prepare' is given twice"),
    ("an image side no memory holds", "prepare: {image_size: 100000, lung_margin: 0.1}\n", {"prepare": PrepareParams},
     r"prepare\.image_size: Input should be less than or equal to 1024"),
]


@pytest.mark.parametrize("case, text, schemas, reason", PARAMS_CASES, ids=[c[0] for c in PARAMS_CASES])
def test_a_bad_params_value_is_refused_with_its_key(case, text, schemas, reason, tmp_path):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(SystemExit, match=rf"(?s)^error: .*{reason}"):
        stage_params(schemas, tmp_path / "params.yaml")


def test_strict_params_still_read_the_repositorys_own(tmp_path):
    """The control for the rows above: the shipped params.yaml passes the same strict schemas."""
    assert cxr(["check"]) == 0


# --- predict's outputs ------------------------------------------------------------------------------------------


def test_explanation_figures_of_look_alike_names_never_overwrite_each_other(checkpoint, tmp_path, capsys):
    films = [tmp_path / name for name in ("x.png", "x.jpg", "a b.png", "a_b.png")]
    for k, film in enumerate(films):
        Image.fromarray((FILM // 16 + k).astype(np.uint8)).save(film)
    maps = tmp_path / "maps"
    assert cxr(["predict", *map(str, films), "--model", str(checkpoint), "--no-segmenter", "--json", "--explain", str(maps)]) == 0
    figures = [p["explanation"]["figure"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    assert len(set(figures)) == 4 and sorted(map(str, maps.iterdir())) == sorted(figures)


def test_a_full_disk_costs_the_figures_not_the_predictions(checkpoint, tmp_path, monkeypatch, capsys):
    from cxr.explain import figures

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(figures, "write_prediction_figure", full)
    film = tmp_path / "film.png"
    film.write_bytes(_png_bytes())
    assert cxr(["predict", str(film), "--model", str(checkpoint), "--no-segmenter", "--json", "--explain", str(tmp_path)]) == 0
    prediction = json.loads(capsys.readouterr().out)["predictions"][0]
    assert prediction["predicted"] is not None and prediction["explanation"]["figure"] is None
    assert prediction["notes"] == ["figure not written (No space left on device)"]


def _png_bytes(offset: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((FILM // 16 + offset).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_zip_member_with_an_absolute_or_parent_path_is_named(tmp_path, capsys):
    for evil in ("/etc/film.png", "Normal/../../film.png"):
        archive = write_zip({**class_folders_tree(n=2), evil: _png_bytes()}, tmp_path / "films.zip")
        with pytest.raises(SourceIndexError, match=re.escape(f"member {evil!r} has an absolute or '..' path")):
            _index(archive)
        assert cxr(["inspect", str(archive)]) == 1
        assert f"member {evil!r}" in capsys.readouterr().err


def test_a_full_disk_in_a_stage_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    (tmp_path / "params.yaml").write_text("device: cpu\n")
    stage_params({"device": Device}, tmp_path / "params.yaml")  # what every stage calls first
    sys.excepthook(OSError, OSError(errno.ENOSPC, "No space left on device", "models/full/.resnet18.pt.tmp-1"), None)
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: no space left on the device while writing models/full/") and "\n" not in error
    assert "previous ones are intact" in error
