"""Schema of the `shortcut` section of params.yaml (the shortcut experiment the report compares)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from cxr.params import Section, _unique


class ShortcutParams(Section):
    # Trained on `dataset` as well as on the clean views; [] runs no shortcut experiment.
    models: Annotated[list[str], AfterValidator(_unique)]
    dataset: str  # a `dataset` entry on the marked twin (full view)
    clean: str  # the same view of the clean films
    marker_free: str  # a test dataset whose films carry no marker
