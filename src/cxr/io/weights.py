"""Reading torch files from others: tensors and plain values only, never pickled objects.

A `.pt` file is a pickle, and unpickling can call any function the file names: a checkpoint, segmenter or
weights file from someone else could run code on load. Every torch file the package reads goes through
`load_tensors`, which uses torch's weights-only unpickler and says "unsafe" when a file asks for more.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


class WeightsFileError(ValueError):
    """A torch file that cannot be read; `unsafe` when it was refused for holding pickled objects."""

    def __init__(self, message: str, unsafe: bool = False):
        super().__init__(message)
        self.unsafe = unsafe


def load_tensors(path: Path, map_location: torch.device | str = "cpu") -> object:
    """The content of a torch file written with torch.save: dicts, lists, numbers, strings and tensors."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower() and "global" in str(err).lower():
            # The first line of torch's message names the object the file asked for.
            asked = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
            raise WeightsFileError(f"{path} refused as unsafe: it holds pickled Python objects besides tensors, and "
                                   f"loading them could run code it carries ({asked or 'not a plain weights file'})",
                                   unsafe=True) from None
        raise WeightsFileError(f"{path} is not a readable torch file (not a pickle torch wrote); "
                               f"it may be empty or truncated") from None
    except Exception as err:  # torch raises many types for empty, truncated or foreign files
        first_line = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise WeightsFileError(f"{path} is not a readable torch file ({type(err).__name__}: {first_line}); "
                               f"it may be empty or truncated") from None
