"""Process-wide state a run changes and must put back: the global random generators, torch's deterministic mode,
cuDNN's autotuner, torch's thread count and the environment, so that whatever runs next in the same process (a
notebook cell, a sweep, the test suite) does not inherit them."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def environment_restored() -> Iterator[None]:
    """Whatever the block sets in or removes from os.environ (children started later inherit it) is undone on exit."""
    environment = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environment)


@contextmanager
def process_state_restored(device: torch.device) -> Iterator[None]:
    """Whatever the block changes of the global random generators, torch's deterministic mode, cuDNN's autotuner,
    torch's thread count and the environment (Ultralytics' trainer changes most of them) is undone on exit."""
    generators = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_generators = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark, threads = torch.backends.cudnn.benchmark, torch.get_num_threads()
    try:
        with environment_restored():
            yield
    finally:
        random.setstate(generators[0])
        np.random.set_state(generators[1])
        torch.set_rng_state(generators[2])
        if cuda_generators is not None:
            torch.cuda.set_rng_state_all(cuda_generators)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.set_num_threads(threads)
