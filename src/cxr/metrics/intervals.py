"""Percentile bootstrap intervals over test images, and the figures written to JSON beside them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_interval(labels: np.ndarray, predictions: np.ndarray, statistic: Callable[..., np.ndarray | float],
                       resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval over test images (labels and predictions resampled together). A `statistic`
    with an `axis` argument is given every resample at once (scipy's vectorized form), others one at a time; the
    resamples are the same either way."""
    from scipy.stats import bootstrap

    result = bootstrap((labels, predictions), statistic, paired=True, n_resamples=resamples,
                       confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_interval(values: np.ndarray, resamples: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean over images; NaNs (maps with no mass) left out.

    With fewer than two values the interval is the mean itself (nothing to resample); with none, all NaN.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) < 2 or np.all(values == values[0]):
        return mean, mean, mean
    from scipy.stats import bootstrap

    result = bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=confidence, method="percentile",
                       rng=np.random.default_rng(seed))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_or_none(values: list[float]) -> float | None:
    values = [v for v in values if not np.isnan(v)]
    return finite_or_none(float(np.mean(values))) if values else None


def finite_or_none(value: float) -> float | None:
    """The value rounded to 6 decimals for JSON, which has no NaN: a figure with nothing to average over is null."""
    return None if value is None or not np.isfinite(value) else round(float(value), 6)
