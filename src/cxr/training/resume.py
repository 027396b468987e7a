"""Where a killed training goes on from: the state at the end of its last completed epoch.

`dvc repro` deletes a stage's outputs before it runs it again, so the resume point lives outside them, in a
git- and DVC-ignored folder of the working directory (resume_file), and is deleted once the checkpoint is
written. It holds everything the next epoch reads: model, optimizer, scheduler and gradient scaler, the best
epoch so far, every random generator the loop draws from and the metrics logged so far; on the CPU the
resumed run's checkpoint and log have the bytes of an uninterrupted one.

A point is used only by the run that wrote it: its key digests the model and training params, the classes,
the preprocessing, the device type, the training and validation arrays and the library's source. Anything
else (changed params, data or code) starts over, and says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from cxr.io.files import atomic_path, file_md5

LIBRARY = Path(__file__).resolve().parents[1]
# Ignored by name in .gitignore and .dvcignore: a killed run's point must not show up as a change to commit, nor in
# the hash of a folder a stage depends on.
RESUME_DIR = Path(".cxr-resume")


def resume_file(checkpoint: Path) -> Path:
    """Where the training that writes `checkpoint` keeps its resume point: under RESUME_DIR, at the checkpoint's
    path (relative to the working directory, or from its root when it lies elsewhere), so two trainings never
    share one, and none lies in a folder that DVC tracks (evaluate depends on the checkpoints' folder)."""
    absolute = Path(os.path.abspath(checkpoint))
    here = Path.cwd()
    where = absolute.relative_to(here) if absolute.is_relative_to(here) else absolute.relative_to(absolute.anchor)
    return RESUME_DIR / where


def run_key(settings: dict, data_files: Iterable[Path]) -> str:
    """A digest of what decides a training's result: its settings (JSON-able), its data files and the library."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in sorted(data_files):
        digest.update(f"{path.name}:{file_md5(path)}".encode())
    for path in sorted(LIBRARY.rglob("*.py")):
        digest.update(path.relative_to(LIBRARY).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def random_states(generators: dict[str, torch.Generator], device: torch.device) -> dict:
    """Every generator a training epoch draws from: the loop's own, and Python's, NumPy's and torch's global ones
    (dropout draws from torch's)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"generators": {name: generator.get_state() for name, generator in generators.items()},
              "torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss]}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict, generators: dict[str, torch.Generator], device: torch.device) -> None:
    for name, generator in generators.items():
        generator.set_state(states["generators"][name])
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    if device.type == "cuda":
        torch.cuda.set_rng_state_all(states["cuda"])


def save_point(path: Path, key: str, state: dict) -> None:
    """The state after a completed epoch, replacing the previous epoch's in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"key": key, **state}, tmp)


def load_point(path: Path, key: str) -> dict | None:
    """The saved state of this run, or None (with the reason printed) when there is none or it is another run's.
    Loaded with weights_only: a resume file holds tensors, numbers and strings, never code."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a file cut short by a full disk, or not ours: start over rather than fail
        print(f"{path}: not a usable resume point ({type(err).__name__}: {err}); training from the start", flush=True)
        return None
    if state.get("key") != key:
        print(f"{path}: saved by a run with other params, data or code; training from the start", flush=True)
        return None
    return state


def remove_point(path: Path) -> None:
    """The finished run's point, and the folders up to the resume folder (resume_file) that it leaves empty."""
    path.unlink(missing_ok=True)
    tops = [folder for folder in path.parents if folder.name == RESUME_DIR.name]
    if not tops:
        return  # a point given outside any resume folder: the folders around it are not ours to remove
    for folder in path.parents:
        if not folder.is_dir() or any(folder.iterdir()):
            break
        folder.rmdir()
        if folder == tops[-1]:
            break
