"""Checkpoints: the state dict plus everything needed to rebuild the model and feed it, loadable with weights_only=True."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cxr.io.files import atomic_path
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


def load_checkpoint(path: Path, device: torch.device | str = "cpu", expect: dict | None = None) -> tuple[nn.Module, dict]:
    """The model in eval mode and its meta; `expect` lists meta values that must match (arch, dataset, ...)."""
    if not path.exists():
        raise CheckpointError(f"{path} not found: train the model first (`dvc repro`)")
    retrain = "retrain it (`dvc repro`), or fetch it again (`dvc checkout` / `dvc pull`)"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for empty, truncated or foreign files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}); "
                              f"it may be empty or truncated: {retrain}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT or "meta" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this pipeline (no format {CHECKPOINT_FORMAT} marker); {retrain}")
    meta = checkpoint["meta"]
    for key, wanted in (expect or {}).items():
        if meta.get(key) != wanted:
            raise CheckpointError(f"{path} was made with {key} = {meta.get(key)!r}, but params.yaml and the prepared "
                                  f"data now give {wanted!r}: its scores would be meaningless; {retrain}")
    try:
        model = build_model(meta["arch"], len(meta["classes"]), meta["image_size"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path} does not fit its own architecture ({type(err).__name__}: {err}); {retrain}") from None
    return to_device_format(model, torch.device(device)).eval(), meta
