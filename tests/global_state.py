"""Process-wide state a test must leave as it found it, so that no test passes or fails because of another.

Flags and patches (deterministic algorithms, cuDNN's autotuner, thread count, default dtype, the environment,
PIL's Image.open) must come back unchanged: a test that leaves one changed fails, naming it. Random number
generators are different: building a model or drawing a batch advances them by design, so they are only put
back, which keeps every test's draws independent of the tests before it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image


def flags() -> dict[str, Any]:
    return {
        "torch.are_deterministic_algorithms_enabled()": torch.are_deterministic_algorithms_enabled(),
        "torch.backends.cudnn.benchmark": torch.backends.cudnn.benchmark,
        "torch.get_num_threads()": torch.get_num_threads(),
        "torch.get_default_dtype()": torch.get_default_dtype(),
        # pytest's own PYTEST_CURRENT_TEST names the phase it is in: it changes between setup and teardown.
        "os.environ": {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"},
        "PIL.Image.open": Image.open,
    }


def changed_flags(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changed = []
    for name, value in before.items():
        if name == "os.environ":
            keys = sorted(key for key in set(value) | set(after[name]) if value.get(key) != after[name].get(key))
            changed += [f"os.environ[{key!r}]" for key in keys]
        elif after[name] != value:
            changed.append(name)
    return changed


def restore_flags(before: dict[str, Any]) -> None:
    torch.use_deterministic_algorithms(before["torch.are_deterministic_algorithms_enabled()"])
    torch.backends.cudnn.benchmark = before["torch.backends.cudnn.benchmark"]
    torch.set_num_threads(before["torch.get_num_threads()"])
    torch.set_default_dtype(before["torch.get_default_dtype()"])
    for key in set(os.environ) - set(before["os.environ"]) - {"PYTEST_CURRENT_TEST"}:
        del os.environ[key]
    os.environ.update(before["os.environ"])
    Image.open = before["PIL.Image.open"]


def generators() -> tuple:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def restore_generators(states: tuple) -> None:
    python, numpy, torch_cpu = states
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(torch_cpu)


@pytest.fixture(autouse=True)
def global_state_unchanged() -> Iterator[None]:
    before, states = flags(), generators()
    yield
    restore_generators(states)
    changed = changed_flags(before, flags())
    if changed:
        restore_flags(before)
        pytest.fail(f"the test left process-wide state changed (now restored): {', '.join(changed)}", pytrace=False)
