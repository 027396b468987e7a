"""Atomic outputs: a stage that fails half-way leaves the previous output untouched and no debris."""

from __future__ import annotations

import pytest

from cxr.io.files import atomic_dir, atomic_path, write_json


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"accuracy": ')
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "accuracy": 0.5\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_directory_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "prepared"
    with atomic_dir(target) as out:
        (out / "train.npz").write_text("old")
        (out / "stale.npz").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as out:
            (out / "train.npz").write_text("new")
            raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["stale.npz", "train.npz"]
    with atomic_dir(target) as out:
        (out / "train.npz").write_text("new")
    assert [p.name for p in target.iterdir()] == ["train.npz"], "outputs are fully rewritten"
    assert (target / "train.npz").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]
