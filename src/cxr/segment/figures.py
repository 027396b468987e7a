"""The segmenter's pictures: the worst-Dice gallery and the lung zones it covers and attends to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxr.figures.tiles import new_figure, note, overlay, save_png, short_name, square_axes
from cxr.anatomy.lungs import ZONES
from cxr.metrics.classification import slug

COLUMNS = ("image, true outline", "predicted lungs", "mask confidence", "uncertainty (entropy)", "Grad-CAM, lungs found")


def write_gallery(images: np.ndarray, truth: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                  uncertainty: np.ndarray, attention: np.ndarray, captions: Sequence[str], title: str, path: Path) -> None:
    """One row per image (worst Dice first): the image with the true lung outline (green), the predicted mask,
    the per-pixel confidence and uncertainty, and the Grad-CAM map of the lungs it found."""
    tile, margin, header, row_title = 1.2, 0.08, 0.55, 0.2
    width = len(COLUMNS) * tile + (len(COLUMNS) + 1) * margin
    height = header + max(len(images), 1) * (tile + row_title + margin)
    figure = new_figure(width, height)
    figure.text(0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=8)
    for column, name in enumerate(COLUMNS):
        figure.text((margin + column * (tile + margin) + tile / 2) / width, 1 - (header - 0.05) / height, name,
                    ha="center", va="bottom", fontsize=6.5)
    if not len(images):
        figure.text(0.5, 0.5, "no test image", ha="center", fontsize=8)
    for row in range(len(images)):
        top = header + row * (tile + row_title + margin)
        figure.text(margin / width, 1 - (top + 0.02) / height, captions[row], fontsize=6.5, va="top")
        outline = truth[row] if truth[row].any() else None
        maps = (None, predicted[row].astype(np.float32), confidence[row], uncertainty[row], attention[row])
        for column, heatmap in enumerate(maps):
            axis = square_axes(figure, margin + column * (tile + margin), top + row_title, tile, width, height)
            overlay(axis, images[row], heatmap, outline)
            if column == 1 and not predicted[row].any():
                note(axis, "nothing segmented")
    save_png(figure, path)


def gallery_caption(name: str, label: str, record: dict) -> str:
    dice = "no true mask" if np.isnan(record["dice"]) else f"Dice {record['dice']:.3f}"
    flags = [flag.replace("_", " ") for flag in ("empty", "more_than_two", "touches_border") if record[flag]]
    return f"{short_name(name, 34)} ({label}): {dice}, {int(record['components'])} lung(s)" + (f"; {', '.join(flags)}" if flags else "")


def write_zone_figure(evaluation: dict, interpretation: dict, classes: Sequence[str], title: str, path: Path) -> None:
    """Per lung zone and diagnosis: the share of the true zone segmented (left) and the share of the Grad-CAM
    mass inside the lungs that falls in the zone (right); a uniform map gives each zone its area share."""
    from matplotlib import colormaps

    figure = new_figure(10, 3.6)
    recalls = [v for k, v in evaluation.items() if k.startswith("zone_recall_") and v is not None]
    # Recall sits near 1: a zoomed axis shows the zones apart, but never hides a bar.
    panels = (("zone_recall", evaluation, "share of the true zone segmented", (min([0.8, *recalls]) - 0.02, 1.0)),
              ("attention_zone", interpretation, "share of the Grad-CAM lung mass", (0, 1)))
    positions = np.arange(len(ZONES))
    bar = 0.8 / len(classes)
    for p, (prefix, metrics, ylabel, limits) in enumerate(panels):
        axis = figure.add_axes((0.07 + p * 0.47, 0.14, 0.4, 0.68))
        for c, name in enumerate(classes):
            values = [metrics.get(f"{prefix}_{zone}_{slug(name)}") for zone in ZONES]
            shown = [(x, v) for x, v in zip(positions + (c - (len(classes) - 1) / 2) * bar, values) if v is not None]
            axis.bar([x for x, _ in shown], [v for _, v in shown], bar, color=colormaps["tab10"](c), label=name)
        axis.set_xticks(positions, ZONES, fontsize=7)
        axis.set_ylim(*limits)
        axis.set_ylabel(ylabel, fontsize=7)
        axis.tick_params(labelsize=7)
        axis.grid(axis="y", alpha=0.3)
        if p == 0:
            axis.legend(fontsize=7, frameon=False, loc="lower left")
    figure.text(0.5, 0.97, title, ha="center", va="top", fontsize=9)
    figure.text(0.07, 0.02, "Upper / middle / lower thirds of each lung's height; central / peripheral halves of its width "
                "per row (as in the classifier explanations).", fontsize=7, color="0.35")
    save_png(figure, path)
