"""The shortcut audit of one source: what tells its classes apart without looking at a lung.

The flags and the baseline work on index rows (cxr.data.index), so the index stage and `cxr inspect` agree:

- `image_statistics`: per film, computed while the index has its pixels and lung mask decoded:
  intensity mean, contrast, quantiles and black-border share, outside the lungs where the source
  has a usable mask (the findings of a disease are in the lungs), and the mean and 95% quantile of
  each corner (where tags and burnt-in labels sit);
- `shortcut_flags`: a class whose films differ from the others' in a property no diagnosis explains
  (file format, bit depth, colour mode, size, border, lung-mask provenance, collection, statistics);
- `metadata_baseline`: a small classifier on those diagnosis-free properties, trained on the source's
  train split and scored on its test split beside chance. Near 1.0, the labels can be read without
  looking at a lung, and a network trained on the films will read them too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np

from cxr.metrics.classification import accuracy_statistic, macro_f1_statistic
from cxr.metrics.intervals import bootstrap_interval

# Lung-mask statuses a lungs view can use; the others are reasons why a film has none.
USABLE_MASKS = ("file", "resized", "from image")

OUTSIDE_LUNGS = "outside lungs"
WHOLE_FILM = "whole film"

STATISTICS = {  # index column -> its name in words
    "intensity_mean": "mean intensity",
    "intensity_std": "contrast (std)",
    "intensity_p05": "5% quantile",
    "intensity_p50": "median intensity",
    "intensity_p95": "95% quantile",
    "black_border": "black-border share",
}
CORNER_PATCHES = ("top_left", "top_right", "bottom_left", "bottom_right")
# A small bright tag (a laterality marker, a burnt-in label) moves a corner's mean little where the corner
# holds tissue, but its brightest pixels fully: both are kept.
CORNERS = {f"corner_{corner}_{stat}": f"{corner.replace('_', '-')} corner {name}"
           for corner in CORNER_PATCHES for stat, name in (("mean", "mean"), ("p95", "95% quantile"))}
# The index columns image_statistics fills; stats_region says where the intensity statistics come from.
STATISTIC_COLUMNS = ("stats_region", *STATISTICS, *CORNERS)

# The lung mask grown by this share of the film's longer side before "outside" is taken: resized masks
# lose border pixels, and opacities reach the pleura, so the statistics stay clear of the lung edge.
LUNG_MARGIN = 0.02
# Below this share of the film outside the (grown) lungs, the whole film is described instead.
MIN_OUTSIDE = 0.05
CORNER_SHARE = 1 / 8  # side of a corner patch, as a share of the film's shorter side
BLACK = 10  # grey levels at or below this are black padding, as in the index's border pattern


def image_statistics(pixels: np.ndarray, lungs: np.ndarray | None) -> dict:
    """The STATISTIC_COLUMNS of one film (uint8 pixels), its lung mask at its size if usable.

    A corner's statistics leave out lung pixels too; "" where nothing is left (a lung filling a corner).
    """
    near_lungs = None
    if lungs is not None:
        from scipy import ndimage

        margin = max(1, round(LUNG_MARGIN * max(pixels.shape)))
        near_lungs = ndimage.maximum_filter(lungs.astype(np.uint8), size=2 * margin + 1) > 0
    outside = ~near_lungs if near_lungs is not None and (~near_lungs).mean() >= MIN_OUTSIDE else None
    values = pixels[outside] if outside is not None else pixels.ravel()
    # A histogram of the 256 grey levels gives every statistic in one pass, even of a 3000-px film.
    histogram = np.bincount(values, minlength=256).astype(np.float64)
    levels = np.arange(histogram.size)
    mean = float(histogram @ levels / values.size)
    std = math.sqrt(float(histogram @ (levels - mean) ** 2 / values.size))
    cumulative = np.cumsum(histogram)
    found = {"stats_region": OUTSIDE_LUNGS if outside is not None else WHOLE_FILM,
             "intensity_mean": round(mean, 2), "intensity_std": round(std, 2)}
    for column, share in (("intensity_p05", 0.05), ("intensity_p50", 0.5), ("intensity_p95", 0.95)):
        found[column] = int(np.searchsorted(cumulative, share * values.size))
    found["black_border"] = black_border_share(pixels)
    side = max(1, round(CORNER_SHARE * min(pixels.shape)))
    ends = {"top": slice(None, side), "bottom": slice(-side, None), "left": slice(None, side), "right": slice(-side, None)}
    for corner in CORNER_PATCHES:
        vertical, horizontal = corner.split("_")
        rows, cols = ends[vertical], ends[horizontal]
        patch = pixels[rows, cols] if near_lungs is None else pixels[rows, cols][~near_lungs[rows, cols]]
        found[f"corner_{corner}_mean"] = round(float(patch.mean()), 2) if patch.size else ""
        found[f"corner_{corner}_p95"] = round(float(np.percentile(patch, 95)), 2) if patch.size else ""
    return found


def black_border_share(pixels: np.ndarray) -> float:
    """Share of the film taken by black rows and columns along its edges (a frame or padding)."""
    black = pixels <= BLACK
    rows, cols = black.mean(axis=1) >= 0.9, black.mean(axis=0) >= 0.9

    def run(flags: np.ndarray) -> int:  # leading black lines
        return int(np.argmin(flags)) if not flags.all() else len(flags)

    height = max(0, len(rows) - run(rows) - run(rows[::-1]))
    width = max(0, len(cols) - run(cols) - run(cols[::-1]))
    return round(1 - height * width / pixels.size, 4)


def mask_provenance(mask_status: str) -> str:
    """Where a film's lung mask comes from: file, resized, from image, missing or unusable."""
    return mask_status if mask_status in USABLE_MASKS or mask_status == "missing" else "unusable"


def native_size(row: dict) -> str:
    return f"{row['width']}x{row['height']}"


def size_bucket(width: int, height: int) -> str:
    """Sizes rounded to powers of two-ish buckets: 299 and 300 px are the same source, 299 and 1024 are not."""
    side = max(width, height)
    bucket = round(2 ** (np.floor(np.log2(side) * 2) / 2))
    return f"~{bucket}px {'portrait' if height > width * 1.05 else 'landscape' if width > height * 1.05 else 'square'}"


def number(value: object) -> float:
    """A statistic as read from a fresh row (a number) or from index.csv (text; "" for none): NaN for none."""
    return math.nan if value in ("", None) else float(value)


# --- flags -----------------------------------------------------------------------------------------------------

# A property that tells one class from the rest this well (total variation distance of two category
# distributions, or the Kolmogorov-Smirnov distance of two samples; 0 = identical, 1 = disjoint) lets a
# model score without looking at the lungs.
SHORTCUT_DISTANCE = 0.5
# Statistics are flagged only where the distance is also this unlikely by chance: a handful of films
# per class can lie 0.5 apart on some statistic without any shortcut.
SIGNIFICANCE = 0.001
# Exact sizes shared by fewer films count as "other sizes": real films of varied size would otherwise
# each be a category of their own, and every class would differ from every other.
COMMON_SIZE = 3
# The baseline is flagged where the lower end of its accuracy interval clears chance by this much.
BASELINE_MARGIN = 0.1


def common_sizes(rows: list[dict]) -> Callable[[dict], str]:
    """A row's native size where at least COMMON_SIZE films share it, else 'other sizes'."""
    common = {size for size, count in Counter(map(native_size, rows)).items() if count >= COMMON_SIZE}
    return lambda row: native_size(row) if native_size(row) in common else "other sizes"


def shortcut_flags(rows: list[dict], classes: list[str]) -> list[str]:
    """Plain-language warnings: a class whose images differ from the others in a way no diagnosis explains."""
    properties: dict[str, Callable[[dict], str]] = {
        "file format": lambda row: row["format"],
        "bit depth": lambda row: str(row["bits"]),
        "colour mode": lambda row: row["mode"],
        "native size": common_sizes(rows),
        "image size": lambda row: size_bucket(int(row["width"]), int(row["height"])),
        "border pattern": lambda row: row["border"],
        "lung-mask provenance": lambda row: mask_provenance(row["mask_status"]),
        "source collection": lambda row: row["source"] or "(unknown)",
    }
    # The size bucket says less than the exact size where both differ: one flag is enough.
    said_by = {"image size": "native size"}
    flags = []
    for label in classes:
        inside = [row for row in rows if row["label"] == label]
        outside = [row for row in rows if row["label"] != label]
        if not inside or not outside:
            continue
        fired = set()
        for prop, key in properties.items():
            if said_by.get(prop) in fired:
                continue
            a, b = Counter(map(key, inside)), Counter(map(key, outside))
            distance = 0.5 * sum(abs(a[v] / len(inside) - b[v] / len(outside)) for v in set(a) | set(b))
            if distance >= SHORTCUT_DISTANCE:
                fired.add(prop)
                top = a.most_common(1)[0][0]
                flags.append(f"{label}: {prop} differs from the other classes (distance {distance:.2f}; "
                             f"{a[top] / len(inside):.0%} of {label} is {top!r} vs {b[top] / len(outside):.0%} of the rest)")
        flags += statistic_flags(label, inside, outside)
    return flags


def statistic_flags(label: str, inside: list[dict], outside: list[dict]) -> list[str]:
    """One flag per region (outside the lungs, whole film) where the class's image statistics differ."""
    from scipy.stats import ks_2samp

    flags = []
    names = {**STATISTICS, **CORNERS}
    for region in (OUTSIDE_LUNGS, WHOLE_FILM):
        differing = []
        for column, name in names.items():
            a = _values(inside, column, region)
            b = _values(outside, column, region)
            if len(a) < 2 or len(b) < 2:
                continue
            # Asymptotic p-values: the exact ones cost minutes on classes of thousands of films.
            test = ks_2samp(a, b, method="asymp")
            if test.statistic >= SHORTCUT_DISTANCE and test.pvalue < SIGNIFICANCE:
                shown = "{:.0%}" if column == "black_border" else "{:.0f}"  # a share, else grey levels
                differing.append(f"{name} {shown.format(np.median(a))} vs {shown.format(np.median(b))} "
                                 f"(distance {test.statistic:.2f})")
        if differing:
            flags.append(f"{label}: image statistics ({region}) differ from the other classes, median of "
                         f"{label} vs the rest: {'; '.join(differing)}")
    return flags


def _values(rows: list[dict], column: str, region: str) -> np.ndarray:
    values = np.array([number(row[column]) for row in rows if row["stats_region"] == region], dtype=np.float64)
    return values[~np.isnan(values)]


def statistics_summary(rows: list[dict], classes: list[str]) -> dict:
    """Per class and region: films, and the median of each statistic (for the data report)."""
    summary = {}
    for label in classes:
        summary[label] = {}
        for region in (OUTSIDE_LUNGS, WHOLE_FILM):
            members = [row for row in rows if row["label"] == label and row["stats_region"] == region]
            if not members:
                continue
            medians = {}
            for column in (*STATISTICS, *CORNERS):
                values = _values(members, column, region)
                medians[column] = round(float(np.median(values)), 4) if len(values) else None
            summary[label][region] = {"images": len(members), **medians}
    return summary


# --- the metadata-only baseline --------------------------------------------------------------------------------

BASELINE_TREES = 200
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95
# What the baseline may look at: nothing a diagnosis shows (the lungs), only how the film was made and kept.
CATEGORIES = {"file format": "format", "colour mode": "mode", "border pattern": "border"}
BASELINE_FEATURES = ("width", "height", "aspect", "bit depth", *CATEGORIES, "lung-mask provenance",
                     *(f"{name} ({OUTSIDE_LUNGS} where masked)" for name in STATISTICS.values()),
                     *CORNERS.values())
METRIC_KEYS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "macro_f1", "macro_f1_ci_low", "macro_f1_ci_high",
               "chance_accuracy", "chance_macro_f1")


def baseline_features(rows: list[dict], vocabulary: dict[str, list[str]]) -> np.ndarray:
    """One row of numbers per film: sizes, bit depth, one-hot categories, statistics (NaN where none)."""
    table = []
    for row in rows:
        width, height = int(row["width"]), int(row["height"])
        values = [width, height, width / height, int(row["bits"])]
        for name, categories in vocabulary.items():
            value = category_of(row, name)
            values += [float(value == category) for category in categories]
        values += [number(row[column]) for column in (*STATISTICS, *CORNERS)]
        table.append(values)
    return np.array(table, dtype=np.float64).reshape(len(rows), -1)


def category_of(row: dict, name: str) -> str:
    return mask_provenance(row["mask_status"]) if name == "lung-mask provenance" else row[CATEGORIES[name]]


def metadata_baseline(rows: list[dict], classes: list[str], seed: int) -> dict:
    """A random forest on BASELINE_FEATURES, trained on the train split, scored on the test split.

    Accuracy and macro-F1 come with percentile-bootstrap intervals over the test films, beside chance:
    always answering the train split's most frequent class. None where there is nothing to score.
    """
    train = [row for row in rows if row["split"] == "train"]
    test = [row for row in rows if row["split"] == "test"]
    found: dict = {
        "features": list(BASELINE_FEATURES),
        "model": f"random forest, {BASELINE_TREES} trees, balanced class weights",
        "train_images": len(train), "test_images": len(test),
        "train_counts": {label: sum(row["label"] == label for row in train) for label in classes},
        "test_counts": {label: sum(row["label"] == label for row in test) for label in classes},
        **dict.fromkeys(METRIC_KEYS), "chance_class": None, "test_recall": dict.fromkeys(classes),
    }
    if not test:
        return {**found, "not_computed": "no test split"}
    if len({row["label"] for row in train}) < 2:
        return {**found, "not_computed": "fewer than two classes in the train split"}
    from sklearn.ensemble import RandomForestClassifier

    vocabulary = {name: sorted({category_of(row, name) for row in rows}) for name in (*CATEGORIES, "lung-mask provenance")}
    y_train = np.array([classes.index(row["label"]) for row in train])
    y_test = np.array([classes.index(row["label"]) for row in test])
    model = RandomForestClassifier(BASELINE_TREES, class_weight="balanced", random_state=seed, n_jobs=1)
    model.fit(baseline_features(train, vocabulary), y_train)
    predicted = model.predict(baseline_features(test, vocabulary))
    counts = np.bincount(y_train, minlength=len(classes))
    majority = int(np.argmax(counts))  # ties: the first class in `classes`
    chance = np.full(len(y_test), majority)
    present = np.unique(y_test)

    accuracy, macro_f1 = accuracy_statistic, macro_f1_statistic(present)
    found.update(accuracy=float(accuracy(y_test, predicted)), macro_f1=float(macro_f1(y_test, predicted)),
                 chance_accuracy=float(accuracy(y_test, chance)), chance_macro_f1=float(macro_f1(y_test, chance)),
                 chance_class=classes[majority])
    if len(y_test) >= 2:  # a bootstrap needs two films to resample
        for key, statistic in (("accuracy", accuracy), ("macro_f1", macro_f1)):
            low, high = bootstrap_interval(y_test, predicted, statistic, BOOTSTRAP_RESAMPLES, CONFIDENCE, seed)
            found[f"{key}_ci_low"], found[f"{key}_ci_high"] = low, high
    for key in METRIC_KEYS:  # null, never NaN, in the JSON
        found[key] = None if found[key] is None or math.isnan(found[key]) else round(found[key], 4)
    found["test_recall"] = {label: round(float(np.mean(predicted[y_test == i] == i)), 4) if (y_test == i).any() else None
                            for i, label in enumerate(classes)}
    return found


def baseline_flag(baseline: dict) -> list[str]:
    """A flag where the baseline clearly beats chance: the labels can be read without the lungs."""
    low, chance = baseline["accuracy_ci_low"], baseline["chance_accuracy"]
    if low is None or chance is None or low < chance + BASELINE_MARGIN:
        return []
    return [(f"metadata-only baseline: accuracy {plain(baseline['accuracy'])} [{plain(low)}, "
             f"{plain(baseline['accuracy_ci_high'])}] vs chance {plain(chance)} from size, format, mask provenance, "
             f"corners and intensity statistics (outside the lungs where masked): the labels can be read without "
             f"looking at a lung")]


def baseline_line(baseline: dict) -> str:
    """The baseline in one line of the data report's summary."""
    if baseline.get("not_computed"):
        return f"metadata-only baseline: not computed ({baseline['not_computed']})"

    def scored(key: str) -> str:
        low, high = baseline[f"{key}_ci_low"], baseline[f"{key}_ci_high"]
        interval = f" [{plain(low)}, {plain(high)}]" if low is not None else ""
        return f"{plain(baseline[key])}{interval} (chance {plain(baseline[f'chance_{key}'])})"

    return (f"metadata-only baseline: accuracy {scored('accuracy')}, macro-F1 {scored('macro_f1')} on "
            f"{baseline['test_images']} test images; near 1.0, the labels can be read without looking at a lung")


def plain(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def audit_metrics(report: dict) -> dict:
    """The flat metrics of a data report's audit (the index stage's --audit file): null where not computed."""
    baseline = report["metadata_baseline"]
    found = {f"baseline_{key}": baseline[key] for key in METRIC_KEYS if not key.startswith("chance")}
    found.update(chance_accuracy=baseline["chance_accuracy"], chance_macro_f1=baseline["chance_macro_f1"],
                 test_images=baseline["test_images"], shortcut_flags=len(report["shortcut_flags"]))
    return found
