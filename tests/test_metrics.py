"""Our metrics agree with scikit-learn on fixed inputs, and the extras (ECE, intervals) behave."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

from cxr.metrics.classification import (
    accuracy_statistic,
    classification_metrics,
    confusion_records,
    expected_calibration_error,
    macro_f1_statistic,
    roc_records,
    slug,
)
from cxr.metrics.intervals import bootstrap_interval

CLASSES = ["COVID-19", "Pneumonia", "Normal"]


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200)
    logits = rng.normal(size=(200, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probabilities


def _metrics(labels, probabilities, resamples=200):
    return classification_metrics(labels, probabilities, CLASSES, calibration_bins=10, bootstrap_resamples=resamples,
                                  confidence_level=0.95, seed=0)


def test_metrics_equal_scikit_learn(predictions):
    labels, probabilities = predictions
    predicted = probabilities.argmax(1)
    metrics = _metrics(labels, probabilities)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, labels=[0, 1, 2])
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert metrics["macro_precision"] == pytest.approx(precision.mean())
    assert metrics["macro_recall"] == pytest.approx(recall.mean())
    assert metrics["roc_auc_macro"] == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    for index, name in enumerate(CLASSES):
        key = slug(name)
        assert metrics[f"precision_{key}"] == pytest.approx(precision[index])
        assert metrics[f"recall_{key}"] == pytest.approx(recall[index])
        assert metrics[f"f1_{key}"] == pytest.approx(f1[index])
        assert metrics[f"roc_auc_{key}"] == pytest.approx(roc_auc_score(labels == index, probabilities[:, index]))
    assert metrics["n_test"] == 200
    assert all(isinstance(v, (int, float)) for v in metrics.values()), "metrics must stay flat"


def test_intervals_bracket_the_estimate_and_shrink_with_more_data(predictions):
    labels, probabilities = predictions
    metrics = _metrics(labels, probabilities)
    assert metrics["accuracy_ci_low"] < metrics["accuracy"] < metrics["accuracy_ci_high"]
    assert metrics["macro_f1_ci_low"] < metrics["macro_f1"] < metrics["macro_f1_ci_high"]
    big = _metrics(np.tile(labels, 8), np.tile(probabilities, (8, 1)))
    assert big["accuracy_ci_high"] - big["accuracy_ci_low"] < 0.6 * (metrics["accuracy_ci_high"] - metrics["accuracy_ci_low"])


def test_bootstrap_interval_is_reproducible(predictions):
    labels, probabilities = predictions
    def accuracy(y, p):
        return np.mean(y == p)
    first = bootstrap_interval(labels, probabilities.argmax(1), accuracy, 200, 0.95, seed=3)
    assert first == bootstrap_interval(labels, probabilities.argmax(1), accuracy, 200, 0.95, seed=3)


def random_predictions(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Labels and predictions of a random size, class count and skill; the classes the labels hold."""
    n, k = int(rng.integers(2, 120)), int(rng.integers(2, 5))
    labels = rng.integers(0, k, n)
    predictions = np.where(rng.random(n) < rng.random(), labels, rng.integers(0, k, n))
    return labels, predictions, [c for c in range(k) if (labels == c).any()]


def test_vectorized_statistics_are_scikit_learns_to_the_last_bit():
    """The bootstrap's statistics, computed for every resample at once, give exactly scikit-learn's values (absent
    classes, classes never predicted and zero divisions included), so the intervals are those of scikit-learn's
    functions called once per resample."""
    rng = np.random.default_rng(1)
    for trial in range(200):
        labels, predicted, present = random_predictions(rng)
        assert macro_f1_statistic(present)(labels, predicted) == f1_score(labels, predicted, labels=present,
                                                                          average="macro", zero_division=0)
        assert accuracy_statistic(labels, predicted) == accuracy_score(labels, predicted)
        if trial % 20 == 0:
            def per_resample(y, p):
                return f1_score(y, p, labels=present, average="macro", zero_division=0)
            assert (bootstrap_interval(labels, predicted, macro_f1_statistic(present), 200, 0.95, seed=trial)
                    == bootstrap_interval(labels, predicted, per_resample, 200, 0.95, seed=trial))
    resamples = rng.integers(0, 3, (5, 40)), rng.integers(0, 3, (5, 40))
    assert macro_f1_statistic([0, 1, 2])(*resamples).shape == (5,)


def test_expected_calibration_error_by_hand():
    labels = np.array([0, 0, 1, 1])
    # Confidences 0.9, 0.9 (bin 9: one right, one wrong) and 0.6, 0.6 (bin 6: both right).
    probabilities = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.2, 0.6, 0.2], [0.2, 0.6, 0.2]])
    # Bin 9: |0.5 - 0.9| * 2/4 = 0.2; bin 6: |1.0 - 0.6| * 2/4 = 0.2.
    assert expected_calibration_error(labels, probabilities, bins=10) == pytest.approx(0.4)
    perfect = np.eye(3)[[0, 1, 2]]
    assert expected_calibration_error(np.array([0, 1, 2]), perfect, bins=10) == pytest.approx(0.0)


def test_auc_is_none_for_a_class_missing_from_the_test_split(predictions):
    labels, probabilities = predictions
    keep = labels != 2
    metrics = _metrics(labels[keep], probabilities[keep])
    assert metrics["roc_auc_normal"] is None
    assert metrics["roc_auc_macro"] == pytest.approx(np.mean([metrics["roc_auc_covid19"], metrics["roc_auc_pneumonia"]]))
    assert roc_records(labels[keep], probabilities[keep], 2) == []


def test_plot_records(predictions):
    labels, probabilities = predictions
    records = confusion_records(labels, probabilities.argmax(1), CLASSES)
    assert len(records) == len(labels)
    assert records[0] == {"actual": CLASSES[labels[0]], "predicted": CLASSES[probabilities[0].argmax()]}
    curve = roc_records(labels, probabilities, 0)
    assert curve[0] == {"fpr": 0.0, "tpr": 0.0} and curve[-1] == {"fpr": 1.0, "tpr": 1.0}
