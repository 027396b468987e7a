"""A training run's seeds and deterministic kernels, set for the run and put back after it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from cxr.io.process_state import process_state_restored


@contextmanager
def reproducible(seed: int, device: torch.device) -> Iterator[None]:
    """Seeds Python's, NumPy's and torch's global generators (model initialisation draws from torch's), turns on
    deterministic kernels on the CPU and cuDNN's autotuner on a GPU (fixed input sizes: it picks its fastest
    kernels once); all put back on exit."""
    with process_state_restored(device):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        else:
            torch.backends.cudnn.benchmark = True
        yield
