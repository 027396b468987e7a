"""What an evaluation stage writes for each model, under the two folders dvc.yaml gives it: the flat metrics
JSON in one (git-tracked, what `dvc metrics diff` reads), the per-image and per-curve data in the other. The
evaluate stage writes these files, explain and the report read them: each finds them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvaluationFiles:
    metrics_dir: Path  # metrics/classify/<dataset> or metrics/cross/<trained>-on-<tested>
    reports_dir: Path  # reports/evaluate/<dataset> or reports/cross/<trained>-on-<tested>
    model: str

    @property
    def metrics(self) -> Path:
        return Path(self.metrics_dir) / f"{self.model}.json"

    @property
    def folder(self) -> Path:
        return Path(self.reports_dir) / self.model

    @property
    def predictions(self) -> Path:
        return self.folder / "predictions.csv"

    @property
    def confusion(self) -> Path:
        return self.folder / "confusion.json"

    @property
    def roc(self) -> Path:
        """One JSON of one-vs-rest ROC points per class."""
        return self.folder / "roc"

    @property
    def checkpoint_record(self) -> Path:
        """Which checkpoint was scored: its path and MD5, the hash dvc.lock records for it."""
        return self.folder / "checkpoint.json"
