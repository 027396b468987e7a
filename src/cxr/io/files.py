"""Atomic writes: a stage that dies half-way never leaves a half-written output behind.

Each output is written under a temporary name beside it and renamed into place. A process that is
killed leaves its temporary behind; the next write of the same output removes it (its name carries
the writer's process id, so a temporary of a process that is still running is left alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
# Temporaries are `.<name>.tmp-<pid>-<random>`, backups of replaced folders `.<name>.old-<pid>-<random>`;
# .gitignore and .dvcignore list both patterns.
_TEMPORARY, _BACKUP = "tmp", "old"


def _prefix(path: Path, kind: str) -> str:
    return f".{path.name}.{kind}-{os.getpid()}-"


def _owner_alive(leftover: Path, path: Path, kind: str) -> bool:
    pid = leftover.name.removeprefix(f".{path.name}.{kind}-").split("-", 1)[0]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(leftover: Path) -> None:
    if leftover.is_dir() and not leftover.is_symlink():
        shutil.rmtree(leftover, ignore_errors=True)
    else:
        leftover.unlink(missing_ok=True)


def clean_leftovers(path: Path) -> None:
    """Removes what killed writers of `path` left behind; restores a folder lost between its two renames."""
    if not path.parent.is_dir():
        return
    for kind in (_TEMPORARY, _BACKUP):
        leftovers = sorted(path.parent.glob(f".{path.name}.{kind}-*"), key=lambda p: p.stat().st_mtime)
        for leftover in leftovers:
            if _owner_alive(leftover, path, kind):
                continue
            if kind == _BACKUP and not path.exists():
                # The writer died after moving the old folder aside and before moving the new one in.
                os.replace(leftover, path)
            else:
                _remove(leftover)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path, _TEMPORARY), suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_UMASK)  # mkstemp makes owner-only files; outputs are shared like any other file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yields an empty temporary folder that replaces the folder `path` as a whole if the block succeeds.

    The old folder is moved aside before the new one is moved in and deleted only after, so a crash at
    any moment leaves the old or the new folder (or the old one as a backup that the next write restores).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    tmp_path = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path, _TEMPORARY)))
    tmp_path.chmod(0o777 & ~_UMASK)
    try:
        yield tmp_path
        if path.exists():
            backup = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path, _BACKUP)))
            os.replace(path, backup)
            try:
                os.replace(tmp_path, path)
            except BaseException:
                os.replace(backup, path)
                raise
            shutil.rmtree(backup)
        else:
            os.replace(tmp_path, path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """The file's MD5, as DVC records it in dvc.lock for a file output (so `git log -S <md5> -- dvc.lock` finds
    the commit that made the file)."""
    digest = hashlib.md5()
    with path.open("rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: object) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
