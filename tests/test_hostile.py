"""Hostile and broken inputs, one row per case: each is refused with a one-line reason, or skipped with the
file's name and reason; none runs code, none gives a traceback, none exits 0 with a wrong or empty answer.

Quick tier: every file is made here, small; the checkpoint is an untrained resnet18 at 32 px.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr.cli import main as cxr
from cxr.io.images import UnreadableImage, decode_image
from cxr.models.checkpoints import save_checkpoint
from cxr.models.registry import WeightsError, build_model, read_state_dict
from cxr.params import Device, stage_params
from cxr.segment.train import SegmenterError, read_ultralytics_file
from tests.test_layouts import dicom

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
    else:  # planted where predict looks for the segmenter by default, next to a plain full-view model
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
