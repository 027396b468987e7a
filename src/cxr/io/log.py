"""The per-epoch log every training writes: dvclive, with the plots declared in dvc.yaml instead of its own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dvclive import Live


class EpochLogError(RuntimeError):
    """The log cannot be opened where the stage runs; the message says what to do."""


def epoch_log(directory: Path) -> Live:
    """A dvclive logger writing to directory; no dvc.yaml, report or experiment of its own (the stage is the run)."""
    from dvclive import Live  # slow to import: only when a training starts
    from scmrepo.exceptions import SCMError

    try:
        return Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)
    except SCMError as err:
        # dvclive asks git for the current commit even when it saves no experiment; a fresh `git init` has none.
        raise EpochLogError(f"dvclive cannot log {directory}: {err}. Commit the project once "
                            "(git add -A && git commit -m start), then run dvc repro again") from None
