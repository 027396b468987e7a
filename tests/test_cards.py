"""A model card rendered from its template for a real source (the default pipeline only shows synthetic ones):
the branches a synthetic card does not take, and no template artefact left in the markdown."""

from __future__ import annotations

import yaml

from cxr.report.cards import model_card

CLASSES = ["COVID-19", "Normal", "Pneumonia"]


def scores(accuracy: float) -> dict:
    return {"n_test": 30, "accuracy": accuracy, "accuracy_ci_low": accuracy - 0.1, "accuracy_ci_high": accuracy + 0.05,
            "macro_f1": accuracy - 0.02, "macro_f1_ci_low": accuracy - 0.12, "macro_f1_ci_high": accuracy + 0.03,
            "roc_auc_macro": None, "ece": 0.05,
            **{f"{kind}_{c}": 0.5 for kind in ("precision", "recall", "f1") for c in ("covid19", "normal", "pneumonia")}}


def card(**changes) -> str:
    arguments = dict(
        model="resnet18", dataset="lungs", model_params={"arch": "resnet18", "image_size": 224, "weights": "imagenet", "lr": 1e-4},
        train={"epochs": 5, "batch_size": 32, "weight_decay": 1e-4, "class_balance": "weighted_loss", "seed": 0,
               "augment": {"rotation_degrees": 5, "horizontal_flip": False}},
        view={"view": "lungs", "image_size": 256, "source": "radiography", "images_kept": 90, "images_skipped": 2,
              "counts": {"train": {"COVID-19": 20, "Normal": 20, "Pneumonia": 20}, "test": {"Normal": 10, "Pneumonia": 10}}},
        trained={"best": {"epoch": 3, "val_macro_f1": 0.8123}}, metrics=scores(0.8), cross=[], explained={
            "method": "gradcam", "layer": "layer4", "grid": 7, "sampled": 12,
            **{f"{key}{end}": 0.5 for key in ("cam_lung_energy", "cam_lung_lift", "cam_pointing", "saliency_lung_energy", "road")
               for end in ("", "_ci_low", "_ci_high")}},
        classes=CLASSES, level="95%", audit={"baseline_accuracy": 0.4, "baseline_accuracy_ci_low": 0.3, "baseline_accuracy_ci_high": 0.5,
                                             "chance_accuracy": 0.33}, views=[],
        banner="Real data. Sources: radiography.", synthetic=False, checkpoint_md5="0" * 32)
    return model_card(**{**arguments, **changes})


def test_a_card_of_a_real_source_without_cross_tests_or_probes():
    text = card()
    _, header, body = text.split("---\n", 2)
    hub = yaml.safe_load(header)
    assert "synthetic-data" not in hub["tags"] and [r["dataset"]["type"] for r in hub["model-index"][0]["results"]] == ["lungs"]
    assert "- Trained on a public, de-identified collection" in body and "synthetic" not in body.lower()
    assert "score the predictions (reports/evaluate/<dataset>/<model>/predictions.csv) per subgroup" in body
    # Not its last epoch: no advice to train longer; no cross table, no probe line.
    assert "- Best epoch 3 of 5 by validation macro-F1 (0.812)\n- Training:" in body
    assert "Other datasets' test splits" not in body and "Accuracy of" not in body
    # A class the split lacks counts 0; the totals are the split's.
    assert "| test | 0 | 10 | 10 | 20 |" in body and "| train | 20 | 20 | 20 | 60 |" in body
    assert "ROC-AUC (macro) n/a" in body
    # Markdown, not a template: no tag, no doubled blank line, one newline at the end.
    assert "{" not in body and "\n\n\n" not in text and text.endswith(".\n") and not text.endswith("\n\n")


def test_a_card_lists_its_cross_tests_and_probes():
    text = card(cross=[("hospital2_lungs", scores(0.6))],
                views=[("resnet18", "radiography", [("outside", "radiography_outside", scores(0.4)), ("full", "x", None)])])
    assert "; and the test splits of `hospital2_lungs`\n" in text
    assert "| hospital2_lungs | 0.600 [0.500, 0.650] | 0.580 [0.480, 0.630] | -0.200 | 30 |" in text
    assert "- Accuracy of resnet18 on the outside view 0.400 [0.300, 0.450] (outside: lungs blacked out" in text
    assert "\n\n\n" not in text
