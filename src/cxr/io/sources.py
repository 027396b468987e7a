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

# No film needs more: a 4k x 4k 16-bit DICOM is 32 MB. A file above this is skipped unread.
MAX_FILE_BYTES = 512 * 2**20
# Films hardly compress (PNG and JPEG are compressed already); a member that inflates more than this is a zip bomb.
MAX_COMPRESSION_RATIO = 100


def _check_size(name: str, size: int, compressed: int | None = None) -> None:
    if size > MAX_FILE_BYTES:
        raise OSError(f"{name} is {size / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES // 2**20} MiB a film may be: "
                      f"not read")
    if compressed is not None and size > 2**20 and size > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise OSError(f"{name} would inflate {size // max(compressed, 1)}-fold ({compressed} bytes to {size}): a zip "
                      f"bomb, not a film; not read")


def read_file(path: Path, name: str | None = None) -> bytes:
    """A file's bytes, refused (OSError) unread when larger than MAX_FILE_BYTES."""
    _check_size(name or str(path), path.stat().st_size)
    return path.read_bytes()


class SourceError(ValueError):
    """The raw source cannot be opened; the message names it and the fix."""


def _unreadable_folder(err: OSError) -> None:
    # os.walk skips a folder it cannot list, silently: a class folder would vanish from the data.
    raise SourceError(f"cannot list {err.filename} ({err.strerror}): fix its permissions, then run again")


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
            unsafe = next((name for name in names if name.startswith(("/", "\\")) or ".." in PurePosixPath(name).parts), None)
            if unsafe is not None:
                # No download packs such a name; zip tools would write it outside the folder it is unpacked in.
                raise SourceError(f"{self.path}: member {unsafe!r} has an absolute or '..' path, which no dataset "
                                  f"download has: re-create the zip from the dataset's folder")
        else:
            names = []
            for root, dirs, files in os.walk(self.path, onerror=_unreadable_folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                relative = Path(root).relative_to(self.path)
                names += [(relative / name).as_posix() for name in files]
        return sorted(name for name in names if not _clutter(name))

    def read(self, name: str) -> bytes:
        """A file's bytes; OSError (naming it) for one that cannot be read or is larger than MAX_FILE_BYTES, which
        is checked before reading: a zip member by its declared size (reading stops there) and its ratio."""
        name = self.root + name
        if self.kind == "zip":
            try:
                info = self._archive().getinfo(name)
                _check_size(name, info.file_size, info.compress_size)
                return self._archive().read(info)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, KeyError) as err:
                raise OSError(f"cannot read {name} from {self.path}: {err}") from None
        return read_file(self.path / name, name)

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
