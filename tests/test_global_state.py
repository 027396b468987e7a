"""The suite's guard (tests/global_state.py): a test that leaves process-wide state changed fails, naming it, and
the state is put back before the next test; random generators are put back without failing anyone."""

from __future__ import annotations

import pytest

INNER_CONFTEST = "from tests.global_state import global_state_unchanged  # noqa: F401\n"


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(INNER_CONFTEST)
    return pytester


@pytest.mark.parametrize("leak, named", [
    ("torch.use_deterministic_algorithms(not torch.are_deterministic_algorithms_enabled())",
     "torch.are_deterministic_algorithms_enabled()"),
    ("torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark", "torch.backends.cudnn.benchmark"),
    ("torch.set_num_threads(torch.get_num_threads() + 1)", "torch.get_num_threads()"),
    ("os.environ['CXR_LEAKED'] = '1'", "os.environ['CXR_LEAKED']"),
    ("from PIL import Image; Image.open = lambda *a, **k: None", "PIL.Image.open"),
], ids=["deterministic", "cudnn", "threads", "environment", "pil"])
def test_a_test_that_leaks_state_fails_and_the_next_one_finds_it_restored(inner, leak, named):
    inner.makepyfile(f"""
import os
import torch
from PIL import Image

BEFORE = dict(deterministic=torch.are_deterministic_algorithms_enabled(), benchmark=torch.backends.cudnn.benchmark,
              threads=torch.get_num_threads(), open=Image.open)

def test_leaks():
    {leak}

def test_next_finds_it_restored():
    from PIL import Image
    assert torch.are_deterministic_algorithms_enabled() == BEFORE["deterministic"]
    assert torch.backends.cudnn.benchmark == BEFORE["benchmark"] and torch.get_num_threads() == BEFORE["threads"]
    assert "CXR_LEAKED" not in os.environ and Image.open is BEFORE["open"]
""")
    result = inner.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    assert f"left process-wide state changed (now restored): {named}" in result.stdout.str()


def test_random_generators_are_put_back_without_failing_the_test(inner):
    inner.makepyfile("""
import random
import numpy as np
import torch

def test_draws():
    random.random(), np.random.rand(), torch.rand(1)

def test_draws_again():
    test_draws()
""")
    inner.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    # The same draws in both tests: each starts from the generators' state before the first.
    inner.makepyfile(test_same="""
import random
import numpy as np
import torch

SEEN = []

def test_first():
    SEEN.append((random.random(), float(np.random.rand()), float(torch.rand(1))))

def test_second():
    SEEN.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert SEEN[0] == SEEN[1]
""")
    inner.runpytest_inprocess("-p", "no:cacheprovider", "test_same.py").assert_outcomes(passed=2)


def test_a_test_that_changes_nothing_passes(inner):
    inner.makepyfile("def test_nothing():\n    assert True\n")
    inner.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
