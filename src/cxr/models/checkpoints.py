"""Checkpoints: the state dict plus everything needed to rebuild the model and feed it, loadable with weights_only=True."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cxr.io.files import atomic_path
from cxr.io.view_spec import ViewSpec
from cxr.io.weights import WeightsFileError, load_tensors
from cxr.models.inference import to_device_format
from cxr.models.registry import build_model

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, foreign, or made for other data; the message says what to do."""


def save_checkpoint(path: Path, model: nn.Module, meta: dict) -> None:
    # Contiguous: the same weights give the same bytes whether trained channels_last (CUDA) or not.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    # Saved through a file object: given a path, torch names the archive's inner folder after the (random)
    # temporary file name, and the same weights would get new bytes and a new DVC hash on every run.
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, "meta": meta, "state_dict": state}, handle)


# What rebuilding a model reads from a checkpoint's meta, and the type each must have; prediction reads more.
MODEL_META = {"arch": str, "classes": list, "image_size": int}
PREDICT_META = {**MODEL_META, "mean": (list, tuple), "std": (list, tuple), "preprocessing": dict, "dataset": str}


def meta_problem(meta: object, required: dict = MODEL_META) -> str | None:
    """Why a checkpoint's meta cannot be used (None when it can): a missing entry or one of the wrong type."""
    if not isinstance(meta, dict):
        return f"its metadata is a {type(meta).__name__}, not a mapping"
    for key, kind in required.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            return f"its metadata has no valid {key!r} ({meta.get(key)!r})"
    if not meta["classes"] or not all(isinstance(c, str) for c in meta["classes"]):
        return f"its metadata lists no class names ({meta['classes']!r})"
    if required is MODEL_META:
        return None
    if not len(meta["mean"]) == len(meta["std"]) == 3 or not all(isinstance(v, (int, float)) for v in (*meta["mean"], *meta["std"])):
        return f"its metadata has no per-channel mean and std for three channels ({meta['mean']!r}, {meta['std']!r})"
    return None


def load_checkpoint(path: Path, device: torch.device | str = "cpu", expect: dict | None = None) -> tuple[nn.Module, dict]:
    """The model in eval mode and its meta; `expect` lists meta values that must match (arch, dataset, ...)."""
    if not path.exists():
        raise CheckpointError(f"{path} not found: train the model first (`dvc repro`)")
    retrain = "retrain it (`dvc repro`), or fetch it again (`dvc checkout` / `dvc pull`)"
    try:
        checkpoint = load_tensors(path)
    except WeightsFileError as err:
        raise CheckpointError(f"{err}: {'use only checkpoints this pipeline wrote' if err.unsafe else retrain}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT or "meta" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this pipeline (no format {CHECKPOINT_FORMAT} marker); {retrain}")
    meta = checkpoint["meta"]
    problem = meta_problem(meta)
    if problem:
        raise CheckpointError(f"{path}: {problem}; {retrain}")
    for key, wanted in (expect or {}).items():
        if meta.get(key) != wanted:
            raise CheckpointError(f"{path} was made with {key} = {meta.get(key)!r}, but params.yaml and the prepared "
                                  f"data now give {wanted!r}: its scores would be meaningless; {retrain}")
    try:
        # Built on the meta device, the network skips the random initialisation that the checkpoint's tensors would
        # overwrite (a second of every evaluate and explain stage for the larger architectures); strict loading
        # with assign=True then puts every parameter and buffer in place.
        with torch.device("meta"):
            model = build_model(meta["arch"], len(meta["classes"]), meta["image_size"])
        model.load_state_dict(checkpoint["state_dict"], assign=True)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} does not fit its own architecture ({type(err).__name__}: {err}); {retrain}") from None
    if any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers())):
        raise CheckpointError(f"{path} leaves part of its architecture without weights; {retrain}")
    return to_device_format(model, torch.device(device)).eval(), meta


def checkpoint_in(folder: Path, model: str) -> Path:
    """The checkpoint of `model` in a folder of one dataset's checkpoints, each named after its model."""
    return Path(folder) / f"{model}.pt"


def load_classifier(checkpoint: Path, device: torch.device | str, *, model: str, dataset: str, classes: list[str],
                    view: ViewSpec, arch: str | None = None) -> tuple[nn.Module, dict]:
    """The checkpoint of `model` trained on `dataset`, refused (CheckpointError) unless it was made for that model
    and dataset, these classes and this view (and `arch`, when given): a checkpoint made for another architecture,
    class list or preprocessing would be scored silently and overwrite this model's results. `view` is the
    prepared test set's: a dataset tested across must have been prepared as the one the model learnt from."""
    expect = {"model": model, "dataset": dataset, "classes": classes, "preprocessing": view.as_dict()}
    if arch is not None:
        expect["arch"] = arch
    return load_checkpoint(Path(checkpoint), device, expect)
