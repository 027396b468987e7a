"""Where each stage reads and writes: the one place in the code that names the pipeline's files.

dvc.yaml declares the same paths (tests/test_layout.py checks that they agree). That is why no stage
lists this module as a code dependency: a path changed here must change in dvc.yaml too, which re-runs
exactly the stages concerned, while a path added here for a new stage re-runs nothing.
"""

from pathlib import Path

SPLITS = ("train", "val", "test")


def index_dir(source: str) -> Path:
    return Path("data/index") / source


def index_file(source: str) -> Path:
    """One row per image of the source: class, status, hashes, groups, split, mask (see cxr.data.index)."""
    return index_dir(source) / "index.csv"


def source_file(source: str) -> Path:
    """Where the indexed source lies and its layout, so the views read the same files."""
    return index_dir(source) / "source.json"


def source_report_file(source: str) -> Path:
    """The data report of a source: what `cxr inspect --json` prints."""
    return Path("reports/data/sources") / f"{source}.json"


def source_audit_file(source: str) -> Path:
    """The flat metrics of a source's shortcut audit: the metadata-only baseline beside chance, flag count."""
    return Path("metrics/data") / f"{source}.json"


def prepared_dir(dataset: str) -> Path:
    return Path("data/prepared") / dataset


def split_dir(dataset: str, split: str) -> Path:
    """images.npy, masks.npy, labels.npy, names.npy: memory-mappable arrays of one split."""
    return prepared_dir(dataset) / split


def view_file(dataset: str) -> Path:
    """How the stored images were made from raw ones (view, size, lung margin): prediction must redo it."""
    return prepared_dir(dataset) / "view.json"


def view_report_file(dataset: str) -> Path:
    """Images per split and class in the view, and those the view had to skip."""
    return Path("reports/data/views") / f"{dataset}.json"


def model_file(dataset: str, model: str) -> Path:
    return Path("models") / dataset / f"{model}.pt"


RESUME_DIR = Path(".cxr-resume")


def resume_file(dataset: str, model: str) -> Path:
    """A training's state after its last completed epoch (cxr.training.resume): outside every output, since
    `dvc repro` deletes a stage's outputs before it runs it again; deleted when the training finishes."""
    return RESUME_DIR / dataset / f"{model}.pt"


def train_log_dir(dataset: str, model: str) -> Path:
    """dvclive's folder: metrics.json (the summary) and plots/metrics/ (one .tsv per logged metric)."""
    return Path("reports/train") / dataset / model


def train_summary_file(dataset: str, model: str) -> Path:
    return train_log_dir(dataset, model) / "metrics.json"


def train_curves_dir(dataset: str, model: str) -> Path:
    return train_log_dir(dataset, model) / "plots" / "metrics"


def metrics_file(dataset: str, model: str, tested_on: str | None = None) -> Path:
    """Test-split metrics of the model trained on `dataset`: on its own test split, or on `tested_on`'s."""
    if tested_on is None or tested_on == dataset:
        return Path("metrics/classify") / dataset / f"{model}.json"
    return Path("metrics/cross") / f"{dataset}-on-{tested_on}" / f"{model}.json"


def evaluation_dir(dataset: str, model: str, tested_on: str | None = None) -> Path:
    if tested_on is None or tested_on == dataset:
        return Path("reports/evaluate") / dataset / model
    return Path("reports/cross") / f"{dataset}-on-{tested_on}" / model


def predictions_file(dataset: str, model: str, tested_on: str | None = None) -> Path:
    return evaluation_dir(dataset, model, tested_on) / "predictions.csv"


def confusion_file(dataset: str, model: str, tested_on: str | None = None) -> Path:
    return evaluation_dir(dataset, model, tested_on) / "confusion.json"


def checkpoint_record_file(dataset: str, model: str, tested_on: str | None = None) -> Path:
    """Which checkpoint the evaluation scored: its path and MD5, the hash dvc.lock records for it."""
    return evaluation_dir(dataset, model, tested_on) / "checkpoint.json"


def roc_dir(dataset: str, model: str, tested_on: str | None = None) -> Path:
    """One JSON of one-vs-rest ROC points per class."""
    return evaluation_dir(dataset, model, tested_on) / "roc"


def evaluation_plots_dir(dataset: str, tested_on: str | None = None) -> Path:
    """What `dvc plots` shows of one evaluation stage: every model's ROC curves in one figure, their confusion
    matrices in another (roc.json, confusion.json)."""
    if tested_on is None or tested_on == dataset:
        return Path("reports/plots/evaluate") / dataset
    return Path("reports/plots/cross") / f"{dataset}-on-{tested_on}"


SUMMARY_FILE = Path("reports/summary.md")
# The only metrics file dvc.yaml declares: a few scores per run (cxr.report.headline); the rest lie beside it.
HEADLINE_FILE = Path("metrics/headline.json")
INDEX_FILE = Path("reports/index.html")  # every result in one self-contained page
CARDS_DIR = Path("reports/cards")


def card_file(dataset: str, model: str) -> Path:
    """The model card of one trained classifier."""
    return CARDS_DIR / f"{model}-{dataset}.md"


COMPARISON_FIGURE = Path("reports/comparison.png")


def explain_metrics_file(dataset: str, model: str) -> Path:
    """Where the model's Grad-CAM and saliency maps fall, with intervals: lung energy, pointing game, zones, ROAD."""
    return Path("metrics/explain") / dataset / f"{model}.json"


def explain_dir(dataset: str, model: str) -> Path:
    """maps.npz (the explained test images and their maps) and one panel per class, panel_<class>.png."""
    return Path("reports/explain") / dataset / model


def explain_maps_file(dataset: str, model: str) -> Path:
    return explain_dir(dataset, model) / "maps.npz"


EXPLANATIONS_FIGURE = Path("reports/explanations.png")
ZONES_FIGURE = Path("reports/zones.png")


def segment_export_dir(dataset: str) -> Path:
    """One prepared dataset exported for Ultralytics: images/ and labels/ per split, data.yaml, export.json."""
    return Path("data/segment") / dataset


SEGMENT_EXPORTS = Path("data/segment")
SEGMENTER_FILE = Path("models/segment/segmenter.pt")
SEGMENT_TRAIN_LOG = Path("reports/segment/train")  # dvclive's folder, as the classifiers' train_log_dir
SEGMENT_TRAIN_SUMMARY = SEGMENT_TRAIN_LOG / "metrics.json"
SEGMENT_TRAIN_CURVES = SEGMENT_TRAIN_LOG / "plots" / "metrics"


def segment_metrics_file(dataset: str) -> Path:
    """The segmenter on the dataset's test split: Dice, IoU, mask mAP, failures, anatomical checks."""
    return Path("metrics/segment/evaluate") / f"{dataset}.json"


def segment_interpretation_file(dataset: str) -> Path:
    """Where the segmenter attends, how unsure it is and on which lung zones, by diagnosis."""
    return Path("metrics/segment/explain") / f"{dataset}.json"


def segment_report_dir(dataset: str) -> Path:
    return Path("reports/segment") / dataset


def segment_predictions_file(dataset: str) -> Path:
    """Per test image: Dice, IoU, instances and the anatomical checks of its predicted mask."""
    return segment_report_dir(dataset) / "predictions.csv"


def segment_gallery_file(dataset: str) -> Path:
    return segment_report_dir(dataset) / "gallery.png"


def segment_zones_file(dataset: str) -> Path:
    return segment_report_dir(dataset) / "zones.png"
