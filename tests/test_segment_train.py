"""The segmenter trains, saves and loads offline: every connection attempt fails on purpose and is recorded,
and none may be made. Tiny films (64 px), one or two epochs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cxr.io.arrays import SplitArrays
from cxr.io.process_state import process_state_restored
from cxr.segment.export import export_dataset
from cxr.segment.params import SegmentTrainParams
from cxr.segment.predict import LungInstances, segment_lungs
from cxr.segment.train import SegmentTrainingError, load_segmenter, train_segmenter

CLASSES = ["COVID-19", "Pneumonia", "Normal"]
SIZE = 64


def lung_films(count: int, seed: int) -> SplitArrays:
    """Dark lungs of varying size and position on a brighter noisy film, with their masks."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(count):
        mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
        dx, dy = rng.integers(-3, 4, size=2)
        for centre_x in (20, 44):
            axes = (int(rng.integers(7, 10)), int(rng.integers(17, 22)))
            cv2.ellipse(mask, (centre_x + int(dx), 32 + int(dy)), axes, 0, 0, 360, 1, -1)
        image = rng.normal(170, 12, (SIZE, SIZE)) - 90 * mask
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(mask.astype(bool))
    labels = np.arange(count, dtype=np.int64) % len(CLASSES)
    return SplitArrays(np.stack(images), np.stack(masks), labels, np.array([f"film{seed}_{i}.png" for i in range(count)]))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("segment") / "films"
    export_dataset({"train": lung_films(24, 1), "val": lung_films(6, 2), "test": lung_films(6, 3)}, out, "lung", CLASSES)
    return out


def params(**changes) -> SegmentTrainParams:
    values = dict(seed=0, model="yolov8n-seg.yaml", weights="none", image_size=SIZE, epochs=1, batch_size=8, lr=0.002)
    return SegmentTrainParams(**{**values, **changes})


def train(tmp: Path, exported: Path, **changes) -> tuple[Path, dict]:
    checkpoint = tmp / "models" / "segmenter.pt"
    summary = train_segmenter(params(**changes), "lung", CLASSES, [exported], torch.device("cpu"), checkpoint, tmp / "log")
    return checkpoint, summary


def test_training_offline_writes_weights_and_log_and_nothing_else(tmp_path, exported, no_network):
    checkpoint, summary = train(tmp_path, exported, epochs=2)

    assert no_network == []  # not one connection or name lookup was attempted
    assert checkpoint.is_file()
    assert summary["epochs"] == 2 and 1 <= summary["epoch"] <= 2
    assert summary["names"] == ["lung"] and summary["image_size"] == SIZE
    log = json.loads((tmp_path / "log" / "metrics.json").read_text())
    assert log["step"] == 1 and "mask_map50" in log["val"] and log["best"]["epoch"] == summary["epoch"]
    curve = (tmp_path / "log" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert len(curve) == 3  # header and one row per epoch
    # Ultralytics' run folder, settings and label caches went to the work folder, which is gone.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["segmenter.pt"]
    assert not list(exported.rglob("*.cache"))

    net, loaded = load_segmenter(checkpoint)
    assert loaded == summary
    found = list(segment_lungs(net, lung_films(2, 9).images, SIZE, 0.001, 1))
    assert len(found) == 2 and all(isinstance(lungs, LungInstances) for lungs in found)
    assert found[0].probabilities.shape[1:] == (SIZE, SIZE)


def test_saved_segmenter_loads_in_ultralytics_itself(tmp_path, exported, no_network):
    checkpoint, _ = train(tmp_path, exported)
    from ultralytics import YOLO

    with process_state_restored(torch.device("cpu")):  # Ultralytics' model sets threads and environment variables
        model = YOLO(str(checkpoint))
        assert model.task == "segment" and model.names == {0: "lung"}
        result = model.predict(np.repeat(lung_films(1, 5).images[0][..., None], 3, axis=2), imgsz=SIZE, conf=0.001,
                               device="cpu", verbose=False)
    assert len(result) == 1
    assert no_network == []


def test_same_seed_same_weights_bytes(tmp_path, exported):
    first, _ = train(tmp_path / "a", exported)
    second, _ = train(tmp_path / "b", exported)
    assert hashlib.md5(first.read_bytes()).hexdigest() == hashlib.md5(second.read_bytes()).hexdigest()


def test_training_starts_from_a_local_weights_file(tmp_path, exported, no_network):
    start, _ = train(tmp_path / "start", exported)
    net, _ = load_segmenter(start)
    checkpoint, summary = train(tmp_path / "resumed", exported, weights=str(start))
    assert summary["weights"] == str(start)
    assert no_network == []
    # One epoch from the start weights moves them only a little; from scratch they would be unrelated.
    before = net.state_dict()
    after = load_segmenter(checkpoint)[0].state_dict()
    key = "model.0.conv.weight"
    assert torch.corrcoef(torch.stack([before[key].flatten(), after[key].flatten()]))[0, 1] > 0.9


def test_missing_weights_file_names_it_and_the_fix(tmp_path, exported, no_network):
    fix = r"segment\.train\.weights: .*start-seg\.pt not found.*segment\.train\.weights: none"
    with pytest.raises(SegmentTrainingError, match=fix):
        train(tmp_path, exported, weights=str(tmp_path / "start-seg.pt"))
    assert no_network == []
    assert not (tmp_path / "models" / "segmenter.pt").exists()


def test_exports_without_any_mask_stop_before_training(tmp_path, no_network):
    films = lung_films(6, 4)
    empty = SplitArrays(films.images, np.zeros_like(films.masks), films.labels, films.names)
    export_dataset({"train": empty, "val": films, "test": films}, tmp_path / "unmasked", "lung", CLASSES)
    with pytest.raises(SegmentTrainingError, match=r"no train image with a lung mask in .*unmasked"):
        train(tmp_path, tmp_path / "unmasked")
    assert no_network == []


def test_an_api_key_is_withdrawn_so_nothing_is_uploaded(tmp_path, monkeypatch):
    """With a key, Ultralytics' Platform callback streams metrics and weights, whatever YOLO_OFFLINE says."""
    from cxr.segment.yolo import ultralytics_offline

    monkeypatch.setenv("ULTRALYTICS_API_KEY", "secret")
    ultralytics_offline(tmp_path)
    from ultralytics.utils import SETTINGS

    assert "ULTRALYTICS_API_KEY" not in __import__("os").environ
    SETTINGS.update({"api_key": "secret"})
    ultralytics_offline(tmp_path)
    assert SETTINGS["api_key"] == "" and SETTINGS["dvc"] is False and SETTINGS["sync"] is False


def test_a_damaged_segmenter_file_is_named_with_the_fix(tmp_path):
    from cxr.segment.train import SegmenterError

    damaged = tmp_path / "segmenter.pt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(SegmenterError, match=r"segmenter\.pt cannot be read .*dvc repro segment_train"):
        load_segmenter(damaged)
    torch.save({"state_dict": {}}, damaged)
    with pytest.raises(SegmenterError, match=r"not a segmenter saved by this pipeline"):
        load_segmenter(damaged)
    with pytest.raises(SegmenterError, match=r"not found: train the segmenter first"):
        load_segmenter(tmp_path / "missing.pt")


def test_importing_ultralytics_leaves_pil_reporting_unreadable_files(tmp_path):
    from PIL import Image, UnidentifiedImageError

    from cxr.segment.yolo import ultralytics_offline

    ultralytics_offline(tmp_path)
    (tmp_path / "foreign.png").write_bytes(b"this is no image")
    with pytest.raises(UnidentifiedImageError):
        Image.open(tmp_path / "foreign.png")
