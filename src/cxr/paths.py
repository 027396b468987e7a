"""Where each stage reads and writes: the one place in the code that names the pipeline's files.

dvc.yaml declares the same paths (tests/test_layout.py checks that they agree). That is why no stage
lists this module as a code dependency: a path changed here must change in dvc.yaml too, which re-runs
exactly the stages concerned, while a path added here for a new stage re-runs nothing.
"""

from pathlib import Path

SPLITS = ("train", "val", "test")


def prepared_dir(dataset: str) -> Path:
    return Path("data/prepared") / dataset


def split_file(dataset: str, split: str) -> Path:
    return prepared_dir(dataset) / f"{split}.npz"


def manifest_file(dataset: str) -> Path:
    return prepared_dir(dataset) / "manifest.csv"


def view_file(dataset: str) -> Path:
    """How the stored images were made from raw ones (view, size, lung margin): prediction must redo it."""
    return prepared_dir(dataset) / "view.json"


def data_report_file(dataset: str) -> Path:
    return Path("reports/data") / f"{dataset}.json"


def model_file(dataset: str, model: str) -> Path:
    return Path("models") / dataset / f"{model}.pt"


def train_log_dir(dataset: str, model: str) -> Path:
    """dvclive's folder: metrics.json (the summary) and plots/metrics/ (one .tsv per logged metric)."""
    return Path("reports/train") / dataset / model


def train_summary_file(dataset: str, model: str) -> Path:
    return train_log_dir(dataset, model) / "metrics.json"


def train_curves_dir(dataset: str, model: str) -> Path:
    return train_log_dir(dataset, model) / "plots" / "metrics"


def metrics_file(dataset: str, model: str) -> Path:
    return Path("metrics/classify") / dataset / f"{model}.json"


def evaluation_dir(dataset: str, model: str) -> Path:
    return Path("reports/evaluate") / dataset / model


def predictions_file(dataset: str, model: str) -> Path:
    return evaluation_dir(dataset, model) / "predictions.csv"


def confusion_file(dataset: str, model: str) -> Path:
    return evaluation_dir(dataset, model) / "confusion.json"


def roc_dir(dataset: str, model: str) -> Path:
    """One JSON of one-vs-rest ROC points per class."""
    return evaluation_dir(dataset, model) / "roc"


SUMMARY_FILE = Path("reports/summary.md")
COMPARISON_FIGURE = Path("reports/comparison.png")
