"""Training YOLOv8n-seg offline on exported datasets, logged per epoch with our own dvclive, saved so that
the same run gives the same bytes.

Ultralytics writes its run folder (weights, results.csv with wall-clock times, args.yaml with absolute
paths) and label caches beside the data it reads. Both go to a work folder that is deleted afterwards: the
stage's outputs are only the checkpoint and the log, and the exports other stages made stay untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
import yaml

from cxr.io.log import epoch_log
from cxr.io.process_state import process_state_restored
from cxr.segment.export import DATA_YAML, label_names
from cxr.segment.params import SegmentTrainParams
from cxr.segment.yolo import restricted_loader, ultralytics_offline

# Ultralytics' default training recipe, changed where it does not suit X-ray films or small CPU runs.
RECIPE = {
    "mosaic": 0.0,  # a 2x2 mosaic of films shrinks each lung to a quarter: slower to learn, not what it will see
    "fliplr": 0.0,  # anatomy is not mirror-symmetric (heart on the left)
    "hsv_h": 0.0, "hsv_s": 0.0,  # grey films: hue and saturation do nothing but cost time
    "warmup_epochs": 1.0,  # the default 3 would be most of a short run
    "optimizer": "AdamW",
    "cos_lr": True,
    "plots": False,  # matplotlib figures per epoch; ours are made from the evaluation
    "val": True,
    "amp": False,  # Ultralytics' AMP check downloads weights; fp32 on GPU too
    "workers": 0,
    "deterministic": True,
    "verbose": False,
}


class SegmentTrainingError(ValueError):
    """Training cannot start; the message says which file or parameter to fix."""


class SegmenterError(ValueError):
    """A saved segmenter cannot be used; the message names the file and the fix."""


def start_weights(weights: str) -> Path | None:
    """The `.pt` file to start from, or None (random initialisation); never a name Ultralytics would download."""
    if weights == "none":
        return None
    path = Path(weights)
    if not path.is_file():
        raise SegmentTrainingError(
            f"segment.train.weights: {path} not found. Download it on a machine with internet (e.g. yolov8n-seg.pt from "
            f"https://github.com/ultralytics/assets/releases), place it at that path (`dvc add` it to share it), "
            f"or set segment.train.weights: none to train from scratch")
    return path.resolve()


def training_data(exports: list[Path], work: Path, label_mode: str, classes: list[str]) -> Path:
    """A dataset YAML over copies of the exports' train and val splits in `work` (label caches land there)."""
    train, val = [], []
    for export in exports:
        exported = yaml.safe_load((export / DATA_YAML).read_text())
        if list(exported["names"].values()) != label_names(label_mode, classes):
            raise SegmentTrainingError(f"{export} was exported with labels {list(exported['names'].values())}, not for "
                                       f"segment.label_mode {label_mode!r}: rerun its export (`dvc repro`)")
        for part in ("images", "labels"):
            for split in ("train", "val"):
                shutil.copytree(export / part / split, work / export.name / part / split)
        train.append(f"{export.name}/images/train")
        val.append(f"{export.name}/images/val")
    for split, folders in (("train", train), ("val", val)):
        if not any(any((work / folder).iterdir()) for folder in folders):
            raise SegmentTrainingError(f"no {split} image with a lung mask in {', '.join(str(e) for e in exports)} "
                                       f"(see their export.json): name datasets with lung masks in segment.train_on")
    data = {"path": str(work), "train": train, "val": val, "names": dict(enumerate(label_names(label_mode, classes)))}
    (work / DATA_YAML).write_text(yaml.safe_dump(data, sort_keys=False))
    return work / DATA_YAML


def train_segmenter(params: SegmentTrainParams, label_mode: str, classes: list[str], exports: list[Path],
                    device: torch.device, checkpoint: Path, log_dir: Path) -> dict:
    """Trains, keeps Ultralytics' best epoch (by its fitness: box mAP50-95 plus mask mAP50-95, so at most 2),
    writes the checkpoint and the dvclive log; returns the training summary.

    The log is replaced only together with the checkpoint (as the classifiers'), so a killed run leaves the
    previous pair intact.
    """

    from cxr.io.files import atomic_dir, atomic_path

    weights = start_weights(params.weights)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    # Named as cxr.io.files names temporaries (.<output>.tmp-<pid>-...): ignored by git and DVC, and removed by
    # the next write of the checkpoint if this process is killed.
    # Ultralytics' model and trainer seed the global generators and set deterministic mode, the thread count and
    # environment variables for the whole process: all put back after training.
    with process_state_restored(device), \
            tempfile.TemporaryDirectory(dir=checkpoint.parent, prefix=f".{checkpoint.name}.tmp-{os.getpid()}-") as folder:
        work = Path(folder)
        ultralytics_offline(work / "config")
        from ultralytics import YOLO

        data = training_data(exports, work / "data", label_mode, classes)
        model = YOLO(params.model, task="segment")
        if weights is not None:
            try:
                start = read_ultralytics_file(weights)["model"]
            except SegmenterError as err:
                raise SegmentTrainingError(f"segment.train.weights: {err}") from None
            model.load(start)  # a module: Ultralytics does not unpickle the file again
        with atomic_dir(log_dir) as log_tmp, epoch_log(log_tmp) as live:
            fitness: list[float] = []
            model.add_callback("on_fit_epoch_end", lambda trainer: _log_epoch(live, trainer, fitness))
            model.train(data=str(data), epochs=params.epochs, imgsz=params.image_size, batch=params.batch_size,
                        lr0=params.lr, seed=params.seed, device=_ultralytics_device(device), project=str(work / "runs"),
                        name="train", exist_ok=True, pretrained=weights is not None, **RECIPE)
            trainer = model.trainer
            # Ultralytics saves best.pt whenever an epoch's fitness equals the best so far: the last such epoch.
            best_epoch = max(epoch for epoch, value in enumerate(fitness, 1) if value == max(fitness))
            live.summary["best"] = {"epoch": best_epoch, "fitness": max(fitness)}
            summary = {"epoch": best_epoch, "fitness": max(fitness), "epochs": params.epochs,
                       "label_mode": label_mode, "names": label_names(label_mode, classes), "classes": list(classes),
                       "image_size": params.image_size, "weights": params.weights, "seed": params.seed}
            with atomic_path(checkpoint) as tmp:
                save_segmenter(trainer.best, tmp, summary)
    return summary


def _ultralytics_device(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else str(device.index or 0)


def _log_epoch(live, trainer, fitness: list[float]) -> None:
    if trainer.epoch >= trainer.epochs:  # Ultralytics' final validation of best.pt, not an epoch
        return
    fitness.append(float(trainer.fitness))
    metrics = trainer.metrics
    losses = trainer.tloss  # the epoch's mean loss items: a dict in Ultralytics 8.4, a tensor before
    losses = losses.values() if isinstance(losses, dict) else ([] if losses is None else losses)
    live.log_metric("train/loss", float(sum(float(value) for value in losses)))
    for name, key in (("val/mask_map50", "metrics/mAP50(M)"), ("val/mask_map50_95", "metrics/mAP50-95(M)"),
                      ("val/box_map50", "metrics/mAP50(B)")):
        live.log_metric(name, float(metrics.get(key, float("nan"))))
    live.log_metric("lr", float(trainer.optimizer.param_groups[0]["lr"]))
    live.next_step()
    print(f"segmenter epoch {trainer.epoch + 1}/{trainer.epochs}: mask mAP50 {metrics.get('metrics/mAP50(M)', 0):.3f}, "
          f"mAP50-95 {metrics.get('metrics/mAP50-95(M)', 0):.3f}", flush=True)


def save_segmenter(ultralytics_checkpoint: Path, path: Path, summary: dict) -> None:
    """Ultralytics' best.pt rewritten without what changes between identical runs (date, absolute paths,
    optimizer state): `YOLO(path)` and `yolo predict model=path` still load it."""
    checkpoint = read_ultralytics_file(ultralytics_checkpoint)
    net = checkpoint["model"].float()
    train_args = {"task": "segment", "imgsz": summary["image_size"], "single_cls": False}
    net.args = dict(train_args)
    for attribute in ("criterion", "pt_path"):
        if hasattr(net, attribute):
            setattr(net, attribute, None)
    with path.open("wb") as handle:  # through a file object: see cxr.models.checkpoints.save_checkpoint
        torch.save({"model": net, "ema": None, "train_args": train_args, "cxr": summary,
                    "version": checkpoint.get("version"), "epoch": -1}, handle)


def load_segmenter(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The network of a saved segmenter and its training summary (label mode, names, image size)."""
    retrain = "retrain it (`dvc repro segment_train`)"
    if not Path(path).is_file():
        raise SegmenterError(f"{path} not found: train the segmenter first (`dvc repro segment_train`)")
    try:
        checkpoint = read_ultralytics_file(path)
    except SegmenterError as err:
        raise SegmenterError(f"{err}: {retrain}") from None
    summary = checkpoint.get("cxr")
    if not isinstance(summary, dict) or not isinstance(summary.get("names"), list) or not summary["names"] \
            or not isinstance(summary.get("image_size"), int) or isinstance(summary.get("image_size"), bool):
        raise SegmenterError(f"{path} is not a segmenter saved by this pipeline (no valid training summary): {retrain}")
    net = checkpoint["model"].float().to(device).eval()
    return net, summary


def read_ultralytics_file(path: Path) -> dict:
    """An Ultralytics checkpoint (a dict with its network under "model"), read by Ultralytics' restricted loader:
    weights_only unpickling that rebuilds only known torch and Ultralytics layer classes, so the file cannot run
    code. The same format `YOLO(path)` reads, and the only way this package reads one."""
    ultralytics_offline()  # the pickled network's classes are Ultralytics'
    if not Path(path).is_file():
        raise SegmenterError(f"{path} not found")
    if not zipfile.is_zipfile(path):  # what torch.save writes; anything else would only confuse the unpickler
        raise SegmenterError(f"{path} cannot be read (not a torch file: it may be empty or truncated)")
    load = restricted_loader()
    if load is None:
        raise SegmenterError(f"{path} cannot be read safely with this torch and Ultralytics (restricted loading needs "
                             f"torch >= 2.6 and a recent Ultralytics 8.4): `pip install -r requirements.lock`")
    try:
        checkpoint = load(path)
    except TypeError as err:
        if "outside the supported" in str(err):
            raise SegmenterError(f"{path} refused as unsafe: it holds pickled objects other than known network layers, "
                                 "and loading them could run code it carries") from None
        raise SegmenterError(f"{path} cannot be read ({err})") from None
    except Exception as err:  # a truncated, foreign or incompatible file fails in many ways; all mean the same
        raise SegmenterError(f"{path} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("ema") or checkpoint.get("model"), torch.nn.Module):
        raise SegmenterError(f"{path} is not a segmenter saved by this pipeline (no Ultralytics network in it)")
    if checkpoint.get("ema") is not None:
        checkpoint["model"] = checkpoint["ema"]
    return checkpoint
