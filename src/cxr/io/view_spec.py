"""How a prepared dataset's images were made from raw X-rays (prepare's view.json), as one typed record.

Training keeps it in the checkpoint so prediction can redo it (cxr.data.views.make_view); a test set tested
across must share it with the set the model learnt from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from cxr.io.files import write_json


def view_file(prepared: Path) -> Path:
    """The view.json in a prepared dataset's folder, beside its split folders."""
    return Path(prepared) / "view.json"


class ViewSpecError(ValueError):
    """A view.json that is missing or not one prepare wrote; the message names the file and the fix."""


@dataclass(frozen=True)
class ViewSpec:
    view: str  # full, lungs or outside
    image_size: int  # square side in pixels
    lung_margin: float  # margin around the lungs' box, as a share of its size (lungs view)

    @classmethod
    def read(cls, path: Path) -> ViewSpec:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ViewSpecError(f"{path} not found: prepare the dataset first (`dvc repro`)") from None
        except (ValueError, TypeError) as err:
            raise ViewSpecError(f"{path} is not a view prepare wrote ({err}): prepare it again (`dvc repro`)") from None

    def as_dict(self) -> dict:
        """As view.json and a checkpoint's `preprocessing` hold it."""
        return asdict(self)

    def write(self, path: Path) -> None:
        write_json(path, self.as_dict())
