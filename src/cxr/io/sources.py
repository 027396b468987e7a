"""A downloaded dataset as it came: a folder, or a zip archive whose members are read in place.

Tens of thousands of X-rays need not be unpacked: both kinds list their files as relative POSIX
paths and hand out their bytes. OS clutter (macOS resource forks, thumbnails, hidden files) is not
listed.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath


class SourceError(ValueError):
    """The raw source cannot be opened; the message names it and the fix."""


def _clutter(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return any(part.startswith(".") or part == "__MACOSX" for part in parts) or parts[-1] in {"Thumbs.db", "desktop.ini"}


class RawSource:
    """Files of a folder or a zip archive, by relative POSIX path.

    `root` is a wrapper folder inside it that `read` names are relative to, so a folder and the zip
    that packs it in a folder of its own read alike.
    """

    def __init__(self, path: str | Path, root: str = ""):
        self.path = Path(path)
        self.root = root
        self._zip: zipfile.ZipFile | None = None
        self._owner = os.getpid()  # the process that opened self._zip
        if self.path.is_dir():
            self.kind = "folder"
        elif self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise SourceError(f"{self.path} is a file but not a zip archive; point the source at the "
                                  f"downloaded .zip or at the folder it unpacks to")
            self.kind = "zip"
        else:
            raise SourceError(f"{self.path} does not exist; download the dataset there (see README) or fix the path")

    def files(self) -> list[str]:
        """Every file's path relative to the source (not to `root`), sorted, clutter left out."""
        if self.kind == "zip":
            names = [info.filename for info in self._archive().infolist() if not info.is_dir()]
        else:
            names = []
            for root, dirs, files in os.walk(self.path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                relative = Path(root).relative_to(self.path)
                names += [(relative / name).as_posix() for name in files]
        return sorted(name for name in names if not _clutter(name))

    def read(self, name: str) -> bytes:
        name = self.root + name
        if self.kind == "zip":
            try:
                return self._archive().read(name)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as err:
                raise OSError(f"cannot read {name} from {self.path}: {err}") from None
        return (self.path / name).read_bytes()

    def _archive(self) -> zipfile.ZipFile:
        # Opened lazily, per process: worker processes each get their own handle.
        if self._zip is None:
            self._owner = os.getpid()
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as err:
                raise SourceError(f"{self.path} is not a readable zip archive ({err}); download it again") from None
        return self._zip

    def forget_handle(self) -> None:
        """In a forked worker: an inherited archive handle shares its file offset with the parent
        process, so reads from both would interleave. Drop it unclosed; the next read opens its own."""
        if self._owner != os.getpid():
            self._zip = None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "root": self.root, "kind": self.kind, "_zip": None, "_owner": None}

    def __enter__(self) -> RawSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
