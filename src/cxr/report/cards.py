"""A model card per trained classifier (Mitchell et al. 2019, "Model Cards for Model Reporting"), in markdown
beside the report: what it was trained on and how, how well it does with intervals, where it looks, and
what it is not for."""

from __future__ import annotations

from cxr.metrics.classification import slug
from cxr.report.html import WARNING
from cxr.report.summary import number, with_interval


def model_card(model: str, dataset: str, model_params: dict, train: dict, view: dict, trained: dict, metrics: dict,
               cross: list[tuple[str, dict]], explained: dict, classes: list[str], level: str, audit: dict,
               views: list[tuple[str, str, list[tuple[str, str, dict | None]]]], banner: str) -> str:
    """`view`: the dataset's view report; `trained`: the train stage's summary (best epoch); `cross`:
    (tested_on, metrics) of its cross-dataset tests; `explained`: its explain metrics; `audit`: its source's
    shortcut audit; `views`: the probes on its source's outside view (summary.outside_rows); `banner`: which data
    it learnt from (summary.data_banner)."""
    counts = view["counts"]
    split_rows = "\n".join(f"| {split} | " + " | ".join(str(counts[split].get(c, 0)) for c in classes)
                           + f" | {sum(counts[split].values())} |" for split in counts)
    augment = ", ".join(f"{key} {value}" for key, value in train["augment"].items())
    per_class = "\n".join(
        f"| {c} | {number(metrics.get(f'precision_{slug(c)}'))} | {number(metrics.get(f'recall_{slug(c)}'))} "
        f"| {number(metrics.get(f'f1_{slug(c)}'))} | {number(metrics.get(f'roc_auc_{slug(c)}'))} |" for c in classes)
    cross_rows = "\n".join(f"| {tested_on} | {with_interval(m, 'accuracy')} | {with_interval(m, 'macro_f1')} "
                           f"| {m['macro_f1'] - metrics['macro_f1']:+.3f} | {m['n_test']} |" for tested_on, m in cross)
    view_words = {"full": "whole films, padded to a square",
                  "lungs": "lungs only (black outside the lung mask), cropped to the lungs",
                  "outside": "whole films with the lungs blacked out, padded to a square"}[view["view"]]
    probes = [f"{probe} on the {view_name} view {with_interval(m, 'accuracy')}" for probe, _, cells in views
              for view_name, _, m in cells if m is not None]
    lines = [
        f"# Model card: {model} trained on {dataset}",
        "",
        f"> **{banner}**",
        ">",
        f"> **{WARNING}**",
        "",
        "## Model",
        "",
        f"- Architecture: `{model_params['arch']}`, {len(classes)} classes ({', '.join(classes)}), input "
        f"{model_params['image_size']} px, start weights: {model_params['weights']}",
        f"- Checkpoint: `models/{dataset}/{model}.pt` (`dvc pull` it, or `dvc artifacts get <repo> "
        f"{model.replace('_', '-')}-{dataset}`); predict with `cxr predict FILES --model {dataset}/{model}`",
        f"- Best epoch {trained['best']['epoch']} of {train['epochs']} by validation macro-F1 "
        f"({trained['best']['val_macro_f1']:.3f})"
        + (": the last one, so it may still improve with more epochs (its training curves in the report)"
           if trained["best"]["epoch"] == train["epochs"] else ""),
        "",
        "## Data",
        "",
        f"- Dataset `{dataset}`: {view_words}, stored at {view['image_size']} px, from source `{view['source']}`; "
        f"split by patient and near-duplicate group, so no patient or duplicate film is in two splits",
        f"- {view['images_kept']} images kept, {view['images_skipped']} skipped (see reports/data/views/{dataset}.json)",
        "",
        "| Split | " + " | ".join(classes) + " | Total |",
        "|---|" + "---|" * (len(classes) + 1),
        split_rows,
        "",
        "## Training",
        "",
        f"- {train['epochs']} epochs, batch {train['batch_size']}, AdamW lr {model_params['lr']}, weight decay "
        f"{train['weight_decay']}, class balance: {train['class_balance']}, seed {train['seed']}",
        f"- Augmentation: {augment}",
        "",
        f"## Test metrics ({metrics['n_test']} test images, {level} bootstrap intervals)",
        "",
        f"- Accuracy {with_interval(metrics, 'accuracy')}, macro-F1 {with_interval(metrics, 'macro_f1')}, "
        f"ROC-AUC (macro) {number(metrics.get('roc_auc_macro'))}, expected calibration error {metrics['ece']:.3f}",
        "",
        "| Class | Precision | Recall | F1 | ROC-AUC |",
        "|---|---|---|---|---|",
        per_class,
        "",
    ]
    if cross:
        lines += ["Other datasets' test splits (another hospital, or lungs cut out by the segmenter):", "",
                  f"| Tested on | Accuracy [{level} CI] | Macro-F1 [{level} CI] | Macro-F1 change | Test images |",
                  "|---|---|---|---|---|", cross_rows, ""]
    lines += [
        "## Shortcut audit of its source",
        "",
        f"- Metadata-only classifier (size, format, mask provenance, intensities and corners outside the lungs): "
        f"accuracy {with_interval(audit, 'baseline_accuracy')} against chance {number(audit.get('chance_accuracy'))}; "
        f"{audit.get('shortcut_flags', 0)} shortcut flags (reports/data/sources/{view['source']}.json)",
    ]
    if probes:
        lines.append("- Accuracy of " + "; ".join(probes) + " (outside: lungs blacked out, near chance unless the "
                     "films carry the class outside the lungs)")
    lines += [
        "",
        "## Where it looks",
        "",
        f"{explained['method']} at layer `{explained['layer']}` ({explained['grid']}x{explained['grid']}) and saliency, "
        f"on {explained['sampled']} class-balanced test images:",
        "",
        f"- Share of the CAM inside the lungs {with_interval(explained, 'cam_lung_energy')}, lift "
        f"{with_interval(explained, 'cam_lung_lift')} (1: no preference for the lungs), pointing game "
        f"{with_interval(explained, 'cam_pointing')}",
        f"- Share of the saliency inside the lungs {with_interval(explained, 'saliency_lung_energy')}; ROAD "
        f"faithfulness {with_interval(explained, 'road')} (above 0: the CAM points at what the model uses)",
        "",
        "## Intended use and limits",
        "",
        "- For research on chest X-ray classification methods: comparing architectures, views and explanations, "
        "on data like the training data.",
        "- Not for clinical use. Scores on another hospital's films can be lower than on its own test split (see "
        "above); a model can learn markers outside the lungs (README: Shortcut experiment); the default data are "
        "synthetic films.",
        "- Three classes only: a film with another finding is still forced into one of them.",
        "",
    ]
    return "\n".join(lines)
