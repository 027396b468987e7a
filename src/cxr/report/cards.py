"""A model card per trained classifier (Mitchell et al. 2019, "Model Cards for Model Reporting", their sections in
their order), in markdown beside the report: what it was trained on and how, how well it does with intervals,
where it looks, and what it is not for. It opens with the metadata header the Hugging Face Hub reads (licence,
tags, `model-index` with the test scores), so the card is the README of the model when it is uploaded there."""

from __future__ import annotations

import yaml

from cxr.metrics.classification import slug
from cxr.report.html import WARNING
from cxr.report.summary import number, with_interval


def model_card(model: str, dataset: str, model_params: dict, train: dict, view: dict, trained: dict, metrics: dict,
               cross: list[tuple[str, dict]], explained: dict, classes: list[str], level: str, audit: dict,
               views: list[tuple[str, str, list[tuple[str, str, dict | None]]]], banner: str, synthetic: bool,
               checkpoint_md5: str) -> str:
    """`view`: the dataset's view report; `trained`: the train stage's summary (best epoch); `cross`:
    (tested_on, metrics) of its cross-dataset tests; `explained`: its explain metrics; `audit`: its source's
    shortcut audit; `views`: the probes on its source's outside view (summary.outside_rows); `banner`: which data
    it learnt from (summary.data_banner) and whether all of it is synthetic; `checkpoint_md5`: its checkpoint's hash as dvc.lock records it."""
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
    name = f"{model.replace('_', '-')}-{dataset}"
    lines = [
        "---",
        yaml.safe_dump(hub_metadata(name, dataset, metrics, cross, synthetic), sort_keys=False, width=120).rstrip(),
        "---",
        "",
        f"# Model card: {model} trained on {dataset}",
        "",
        f"> **{banner}**",
        ">",
        f"> **{WARNING}**",
        "",
        "## Model details",
        "",
        f"- Architecture: `{model_params['arch']}`, {len(classes)} classes ({', '.join(classes)}), input "
        f"{model_params['image_size']} px, start weights: {model_params['weights']}",
        f"- Version: checkpoint `models/{dataset}/{model}.pt`, MD5 `{checkpoint_md5}` (the hash dvc.lock records; "
        f"the commit that made it, and its date: `git log -S {checkpoint_md5} --format='%h %ad' -- dvc.lock`)",
        f"- Use: `dvc pull` it, or `dvc artifacts get <repo> {name}`; predict with "
        f"`cxr predict FILES --model {dataset}/{model}`",
        f"- Best epoch {trained['best']['epoch']} of {train['epochs']} by validation macro-F1 "
        f"({trained['best']['val_macro_f1']:.3f})"
        + (": the last one, so it may still improve with more epochs (its training curves in the report)"
           if trained["best"]["epoch"] == train["epochs"] else ""),
        f"- Training: {train['epochs']} epochs, batch {train['batch_size']}, AdamW lr {model_params['lr']}, weight decay "
        f"{train['weight_decay']}, class balance: {train['class_balance']}, seed {train['seed']}; augmentation: {augment}",
        f"- Licence: {LICENCE_NAME} (LICENSE.md), the repository's; the training data keep their own terms. Cite "
        "the repository, and the dataset's own citation for a real source.",
        "",
        "## Intended use",
        "",
        "- For research on chest X-ray classification methods: comparing architectures, views and explanations, "
        "on data like the training data.",
        "- Not for clinical use: not for diagnosis, triage or any decision about a patient. Three classes only: a "
        "film with another finding is still forced into one of them.",
        "",
        "## Factors",
        "",
        "- What changes a chest X-ray model's performance: patient age and sex, projection (PA, AP, lateral), "
        "device and exposure, site and its image processing, disease severity.",
        ("- Synthetic films have none of these: age, sex, projection, device and site are unknown (not modelled). "
         "The only factor varied is the site: the second synthetic hospital's own tone curve and processing "
         "(cross tests below)." if synthetic else
         "- The pipeline reads no patient metadata of the source, so no subgroup but class and source is evaluated: "
         "before any claim, score the predictions (reports/evaluate/<dataset>/<model>/predictions.csv) per "
         "subgroup of the metadata the source ships."),
        "",
        "## Metrics",
        "",
        f"- Accuracy and macro-F1 (classes weigh equally whatever their counts) with {level} bootstrap intervals "
        "over test images; one-vs-rest ROC-AUC per class and macro; expected calibration error (binned by confidence) for "
        "how far its probabilities are from its hit rate.",
        "",
        "## Training data",
        "",
        f"- Dataset `{dataset}`: {view_words}, stored at {view['image_size']} px, from source `{view['source']}`; "
        f"split by patient and near-duplicate group, so no patient or duplicate film is in two splits",
        f"- {view['images_kept']} images kept, {view['images_skipped']} skipped (see reports/data/views/{dataset}.json)",
        "",
        "| Split | " + " | ".join(classes) + " | Total |",
        "|---|" + "---|" * (len(classes) + 1),
        split_rows,
        "",
        "## Evaluation data",
        "",
        f"- The test split above ({metrics['n_test']} images), never seen in training or model selection"
        + (f"; and the test splits of {', '.join(f'`{tested_on}`' for tested_on, _ in cross)}" if cross else ""),
        "",
        f"## Quantitative analyses ({level} bootstrap intervals)",
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
        "### Shortcut audit of its source",
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
        "### Where it looks",
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
        "## Ethical considerations",
        "",
        ("- No patient data: the films are synthetic." if synthetic else
         "- Trained on a public, de-identified collection: its licence and terms of use bind every use of this model."),
        "- A model can read the hospital, device or a marker instead of the disease (DeGrave et al. 2021): the "
        "shortcut audit and the lung share of its explanations above are the checks; a high score alone is none.",
        "- Automation bias: a confident wrong output on a real patient's film harms; it abstains only where the "
        "input checks fail (`cxr predict`), not when it is unsure.",
        "",
        "## Caveats and recommendations",
        "",
        "- Scores on another hospital's films can be lower than on its own test split (cross tests above); test on "
        "your own site's films before drawing conclusions.",
        "- The intervals cover test-set sampling only; train with other seeds (`dvc exp run -S train.seed=N`) to see "
        "training noise.",
        "",
    ]
    return "\n".join(lines)


LICENCE_NAME = "CC BY-NC-ND 4.0"
LICENCE_ID = "cc-by-nc-nd-4.0"  # the Hugging Face Hub's identifier of it


def hub_metadata(name: str, dataset: str, metrics: dict, cross: list[tuple[str, dict]], synthetic: bool) -> dict:
    """The card's YAML header as the Hugging Face Hub reads it: licence, tags and the test scores as `model-index`
    (one result per test split: its own and each cross test's)."""
    def result(tested_on: str, scores: dict) -> dict:
        values = [("accuracy", "Accuracy", scores.get("accuracy"), None),
                  ("f1", "Macro-F1", scores.get("macro_f1"), {"average": "macro"}),
                  ("roc_auc", "ROC-AUC (macro)", scores.get("roc_auc_macro"), {"average": "macro", "multi_class": "ovr"})]
        return {"task": {"type": "image-classification", "name": "Chest X-ray classification"},
                "dataset": {"type": tested_on, "name": f"{tested_on} (test split)", "split": "test"},
                "metrics": [{"type": kind, "value": round(value, 4), "name": title, **({"args": args} if args else {})}
                            for kind, title, value, args in values if value is not None]}

    return {"license": LICENCE_ID, "library_name": "pytorch", "pipeline_tag": "image-classification",
            "tags": ["chest-x-ray", "covid-19", "pneumonia", "medical-imaging", "dvc"]
                    + (["synthetic-data"] if synthetic else []),
            "model-index": [{"name": name, "results": [result(dataset, metrics)]
                             + [result(tested_on, scores) for tested_on, scores in cross]}]}
