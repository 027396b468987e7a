"""Figures of the explanations: one panel per class for each model and dataset (the explain stage), the same
test images across every model and dataset, and the lung zones the maps involve beside a radiology
reference (the report stage).

Figures are laid out by hand in inches, not by tight/constrained layout, so a row or a column always has
the same place; they are saved without a time or software stamp, so the same inputs give the same bytes
(DVC hashes them). matplotlib and the zone scores are imported inside the writers: the explain stage
imports this module with the rest of its library, and matplotlib costs a noticeable share of start-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxr.explain.results import Explanations, explanation_file
from cxr.figures.tiles import NOTE_COLOR, new_figure, note, overlay, save_png, short_name, square_axes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WRONG_COLOR = "tab:red"
DATASET_HATCHES = ("", "////", "....", "xxxx")  # the runs of one model share its colour


def write_class_panels(explained: Explanations, out_dir: Path, title: str, max_rows: int = 4) -> list[Path]:
    """One panel_<class>.png per true class with explained images: a row per image, sampled ones first, then
    the ones added because misclassified, at most max_rows; columns image | CAM of the prediction | CAM of the
    true class (misclassified rows only) | saliency. Returns the written paths, in class order."""
    written = []
    for c, name in enumerate(explained.classes):
        rows = panel_rows(explained, c, max_rows)
        if len(rows) == 0:
            continue
        path = explanation_file(out_dir, name)
        save_png(_class_panel(explained, rows, title), path)
        written.append(path)
    return written


def panel_rows(explained: Explanations, class_index: int, max_rows: int) -> np.ndarray:
    """Indices of the images of true class `class_index` a panel shows: the sampled ones, then the ones added
    because misclassified, each in the order explained, at most max_rows."""
    members = np.flatnonzero(explained.labels == class_index)
    return np.concatenate([members[explained.sampled[members]], members[~explained.sampled[members]]])[:max_rows]


def write_cross_model_figure(runs: Mapping[tuple[str, str], Explanations], datasets: Sequence[str],
                             models: Sequence[str], path: Path) -> None:
    """One row per class, one column per model x dataset (`runs` keyed by (dataset, model)): the CAM of the
    predicted class on the same test image in every column, so models and views compare on equal terms."""
    columns = [(model, dataset) for model in models for dataset in datasets]
    ordered = [runs[dataset, model] for model, dataset in columns if (dataset, model) in runs]
    classes = list(dict.fromkeys(name for run in ordered for name in run.classes))
    picked = [(name, image) for name in classes if (image := shared_image(ordered, name)) is not None]

    tile, label_width, header, tile_title, margin = 1.12, 1.1, 0.75, 0.2, 0.1
    # At least as wide as its title, for a run or two.
    width = max(label_width + len(columns) * (tile + margin) + margin, 5.0)
    height = header + len(picked) * (tile_title + tile + margin) + margin
    figure = new_figure(width, height)
    figure.text(0.1 / width, 1 - 0.08 / height, "CAM of the predicted class on the same test image in every column\n"
                "lung outline where the image has a mask; red: misclassified", ha="left", va="top", fontsize=8)
    for j, (model, dataset) in enumerate(columns):
        left = label_width + j * (tile + margin)
        figure.text((left + tile / 2) / width, 1 - (header - 0.05) / height, f"{model}\n{dataset}",
                    ha="center", va="bottom", fontsize=8)
    for i, (class_name, image_name) in enumerate(picked):
        top = header + i * (tile_title + tile + margin) + tile_title
        figure.text(0.1 / width, 1 - (top + tile / 2) / height, f"{class_name}\n{short_name(image_name, 16)}",
                    ha="left", va="center", fontsize=8)
        for j, (model, dataset) in enumerate(columns):
            axis = square_axes(figure, label_width + j * (tile + margin), top, tile, width, height)
            run = runs.get((dataset, model))
            found = np.flatnonzero(run.names == image_name) if run is not None else []
            if len(found) == 0:
                note(axis, "not explained")
                continue
            k = int(found[0])
            predicted = run.classes[run.predictions[k]]
            overlay(axis, run.images[k], run.cam[k], run.masks[k] if run.has_mask[k] else None)
            axis.set_title(f"pred {predicted} {run.probabilities[k, run.predictions[k]]:.2f}", fontsize=7,
                           color=WRONG_COLOR if run.predictions[k] != run.labels[k] else "black", pad=2)
    save_png(figure, path)


def shared_image(runs: Sequence[Explanations], class_name: str) -> str | None:
    """The first sampled image of the class that every run explains (the sample is drawn from sorted names,
    so runs share it); failing that, the one that the most runs explain; None when no run has the class."""
    candidates = []
    for run in runs:
        if class_name in run.classes:
            chosen = run.sampled & (run.labels == run.classes.index(class_name))
            candidates += [str(name) for name in run.names[chosen]]
    if not candidates:
        return None
    explained_in = [set(run.names.tolist()) for run in runs]
    # max keeps the first of equals: the first run's order decides between images explained as often.
    return max(dict.fromkeys(candidates), key=lambda name: sum(name in names for names in explained_in))


def write_zones_figure(zones: Mapping[tuple[str, str], dict], datasets: Sequence[str], models: Sequence[str],
                       class_slug: str, path: Path, *, class_name: str | None = None) -> None:
    """Grouped bars per lung zone: the share of images predicted as the class whose CAM involves the zone, per
    model x dataset (`zones[(dataset, model)]` is that run's explain metrics), beside the share of COVID-19
    patients with findings there (Abougazia et al. 2021) when the class is COVID-19. No bar: no value."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    from cxr.anatomy.lungs import ZONES
    from cxr.explain.scores import ABOUGAZIA_2021, has_zone_reference

    shown = class_name or class_slug
    series = [(f"{model} / {dataset}", colormaps["tab10"](m % 10), DATASET_HATCHES[d % len(DATASET_HATCHES)],
               [zones.get((dataset, model), {}).get(f"involved_{zone}_{class_slug}") for zone in ZONES])
              for m, model in enumerate(models) for d, dataset in enumerate(datasets)]
    reference = has_zone_reference(class_slug)
    if reference:
        series.append(("COVID-19 patients with findings\n(Abougazia et al. 2021)", "0.2", "",
                       [ABOUGAZIA_2021.get(zone) for zone in ZONES]))

    figure = new_figure(11, 4.2)
    axis = figure.add_axes((0.06, 0.12, 0.68, 0.72))
    width = 0.85 / len(series)
    positions = np.arange(len(ZONES))
    legend = []
    for k, (label, color, hatch, values) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        present = [(x, v) for x, v in zip(positions + offset, values) if v is not None]
        style = {"facecolor": color, "hatch": hatch, "edgecolor": "white", "linewidth": 0}
        axis.bar([x for x, _ in present], [v for _, v in present], width, **style)
        # A legend from the bars would lose the colour of a run with no bar at all.
        legend.append(Patch(label=label if present else f"{label}\n(no {shown} prediction on an image with a mask)", **style))
    axis.set_xticks(positions, ZONES)
    axis.set_ylim(0, 1)
    axis.set_ylabel("share involved")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    source = ("reference: Abougazia et al. 2021, doi 10.1155/2021/4496488 (central not reported)" if reference
              else "no radiology reference for this class (Abougazia et al. 2021 report COVID-19)")
    axis.set_title(f"Lung zones the CAM involves in test images predicted as {shown}\n{source}", fontsize=9)
    figure.text(0.06, 0.02, "A zone is involved when it holds at least its share of the lung area in map mass; "
                "images without a lung mask are left out; no bar: no value.", fontsize=7, color=NOTE_COLOR)
    save_png(figure, path)


def _class_panel(explained: Explanations, rows: np.ndarray, title: str) -> Figure:
    tile, margin, row_title, tile_title, header = 1.12, 0.1, 0.22, 0.2, 0.4
    width = 4 * tile + 5 * margin
    row_height = row_title + tile_title + tile + margin
    height = header + len(rows) * row_height
    figure = new_figure(width, height)
    figure.text(0.5, 1 - 0.1 / height, title, ha="center", va="top", fontsize=9, wrap=True)
    for r, k in enumerate(rows):
        true, predicted = explained.classes[explained.labels[k]], explained.classes[explained.predictions[k]]
        wrong = explained.labels[k] != explained.predictions[k]
        mask = explained.masks[k] if explained.has_mask[k] else None
        top = header + r * row_height
        figure.text(margin / width, 1 - top / height,
                    f"true {true} · predicted {predicted} {explained.probabilities[k, explained.predictions[k]]:.2f}"
                    f"   ({short_name(explained.names[k], 40)})",
                    ha="left", va="top", fontsize=8, color=WRONG_COLOR if wrong else "black")
        axes = [square_axes(figure, margin + j * (tile + margin), top + row_title + tile_title, tile, width, height)
                for j in range(4)]
        overlay(axes[0], explained.images[k], None, mask)
        # The row title names both classes: the tile titles only say which map is which.
        axes[0].set_title("image", fontsize=7, pad=2)
        overlay(axes[1], explained.images[k], explained.cam[k], mask)
        axes[1].set_title("CAM, predicted", fontsize=7, pad=2)
        if wrong:
            overlay(axes[2], explained.images[k], explained.cam_true[k], mask)
            axes[2].set_title("CAM, true class", fontsize=7, pad=2)
        else:
            note(axes[2], "true class = predicted")
        overlay(axes[3], explained.images[k], explained.saliency[k], mask, fade=True)
        axes[3].set_title("saliency, predicted", fontsize=7, pad=2)
    return figure


def write_prediction_figure(path: Path, image: np.ndarray, cam: np.ndarray, saliency: np.ndarray,
                            mask: np.ndarray | None, title: str, method: str) -> None:
    """One predicted film (cxr predict --explain): the model's input | its CAM | its saliency, for the
    predicted class, with the segmenter's lung outline where there is one."""
    tile, margin, header, tile_title = 1.6, 0.1, 0.3, 0.2
    width, height = 3 * tile + 4 * margin, header + tile_title + tile + margin
    figure = new_figure(width, height)
    figure.text(0.5, 1 - 0.08 / height, title, ha="center", va="top", fontsize=8)
    axes = [square_axes(figure, margin + j * (tile + margin), header + tile_title, tile, width, height) for j in range(3)]
    overlay(axes[0], image, None, mask)
    axes[0].set_title("model input", fontsize=7, pad=2)
    overlay(axes[1], image, cam, mask)
    axes[1].set_title(f"{method}, predicted class", fontsize=7, pad=2)
    overlay(axes[2], image, saliency, mask, fade=True)
    axes[2].set_title("saliency, predicted class", fontsize=7, pad=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(figure, path)
