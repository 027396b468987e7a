"""A model card per trained classifier (Mitchell et al. 2019, "Model Cards for Model Reporting", their sections in
their order), in markdown beside the report: what it was trained on and how, how well it does with intervals,
where it looks, and what it is not for. It opens with the metadata header the Hugging Face Hub reads (licence,
tags, `model-index` with the test scores), so the card is the README of the model when it is uploaded there."""

from __future__ import annotations

import yaml

from cxr.metrics.classification import slug
from cxr.report.html import WARNING
from cxr.report.render import render
from cxr.report.summary import number, with_interval


def model_card(model: str, dataset: str, model_params: dict, train: dict, view: dict, trained: dict, metrics: dict,
               cross: list[tuple[str, dict]], explained: dict, classes: list[str], level: str, audit: dict,
               views: list[tuple[str, str, list[tuple[str, str, dict | None]]]], banner: str, synthetic: bool,
               checkpoint_md5: str) -> str:
    """`view`: the dataset's view report; `trained`: the train stage's summary (best epoch); `cross`:
    (tested_on, metrics) of its cross-dataset tests; `explained`: its explain metrics; `audit`: its source's
    shortcut audit; `views`: the probes on its source's outside view (summary.outside_rows); `banner`: which data
    it learnt from (summary.data_banner) and whether all of it is synthetic; `checkpoint_md5`: its checkpoint's hash as dvc.lock records it."""
    name = f"{model.replace('_', '-')}-{dataset}"
    probes = [f"{probe} on the {view_name} view {with_interval(m, 'accuracy')}" for probe, _, cells in views
              for view_name, _, m in cells if m is not None]
    hub = yaml.safe_dump(hub_metadata(name, dataset, metrics, cross, synthetic), sort_keys=False, width=120).rstrip()
    return render("model_card.md.jinja", model=model, dataset=dataset, name=name, model_params=model_params,
                  train=train, view=view, view_words=VIEW_WORDS, best=trained["best"], metrics=metrics, cross=cross,
                  explained=explained, classes=classes, level=level, audit=audit, probes=probes, banner=banner,
                  synthetic=synthetic, checkpoint_md5=checkpoint_md5, hub_metadata=hub, warning=WARNING,
                  licence=LICENCE_NAME, number=number, with_interval=with_interval, slug=slug)


VIEW_WORDS = {"full": "whole films, padded to a square",
              "lungs": "lungs only (black outside the lung mask), cropped to the lungs",
              "outside": "whole films with the lungs blacked out, padded to a square"}


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
