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


def _dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_a_failure_between_the_two_renames_keeps_the_old_folder(tmp_path, monkeypatch):
    """atomic_dir moves the old folder aside before moving the new one in; if the second move fails, it moves back."""
    from cxr.io import files

    target = tmp_path / "prepared"
    with atomic_dir(target) as out:
        (out / "train.npz").write_text("old")
    real_replace = files.os.replace
    calls = []

    def fail_on_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", fail_on_second_rename)
    with pytest.raises(OSError, match="disk full"):
        with atomic_dir(target) as out:
            (out / "train.npz").write_text("new")
    assert (target / "train.npz").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_a_kill_between_the_two_renames_is_repaired_by_the_next_write(tmp_path):
    """A process killed after moving the old folder aside leaves it as a backup; the next write restores it first."""
    from cxr.io.files import clean_leftovers

    target = tmp_path / "prepared"
    backup = tmp_path / f".prepared.old-{_dead_pid()}-x1"
    backup.mkdir()
    (backup / "train.npz").write_text("old")
    clean_leftovers(target)
    assert (target / "train.npz").read_text() == "old"
    with atomic_dir(target) as out:
        (out / "train.npz").write_text("new")
    assert (target / "train.npz").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_leftovers_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    """A killed run leaves `.name.tmp-<pid>-*` files (a 35 MB partial checkpoint was seen); nothing else removes them."""
    import os

    dead_pid = _dead_pid()
    target = tmp_path / "model.pt"
    (tmp_path / f".model.pt.tmp-{dead_pid}-abc.pt").write_bytes(b"partial checkpoint")
    (tmp_path / f".model.pt.tmp-{os.getppid()}-def.pt").write_bytes(b"a live writer's file")
    (tmp_path / ".other.pt.tmp-1-x.pt").write_bytes(b"another output's temporary")
    write_json(target, {"ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "model.pt", f".model.pt.tmp-{os.getppid()}-def.pt", ".other.pt.tmp-1-x.pt"])
