"""Drawing blocks shared by every figure of X-rays: a figure laid out in inches, a square tile, an image with a
heat map and a lung outline over it, and a PNG written with the same bytes for the same inputs.

matplotlib is imported inside the functions: the stages import this module with the rest of their library,
and matplotlib costs a noticeable share of start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxr.io.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
HEATMAP = "jet"
HEATMAP_ALPHA = 0.45
SALIENCY_MAX_ALPHA = 0.85
SALIENCY_SATURATED = 99  # percentile of a saliency map shown at full strength
OUTLINE_COLOR = "white"
NOTE_COLOR = "0.45"


def new_figure(width: float, height: float) -> Figure:
    # A bare Figure needs no GUI backend: the pipeline runs on servers and in CI.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def square_axes(figure: Figure, left: float, top: float, size: float, width: float, height: float) -> Axes:
    """A square axes `size` inches wide whose top-left corner is (left, top) inches from the figure's top-left."""
    axis = figure.add_axes((left / width, 1 - (top + size) / height, size / width, size / height))
    axis.set_axis_off()
    return axis


def overlay(axis: Axes, image: np.ndarray, heatmap: np.ndarray | None, mask: np.ndarray | None, *,
             fade: bool = False) -> None:
    """The grayscale image, the map over it when given, and the lung outline when the image has a mask.

    `fade` makes the map as transparent as it is low, for saliency: its speckle of small gradients over the
    whole image would otherwise hide the image under a uniform tint (and bloat the PNG)."""
    axis.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if heatmap is not None:
        if fade:
            heatmap = clip_outliers(heatmap)
        alpha = heatmap * SALIENCY_MAX_ALPHA if fade else HEATMAP_ALPHA
        axis.imshow(heatmap, cmap=HEATMAP, vmin=0, vmax=1, alpha=alpha, interpolation="nearest")
    # A mask that is all True or all False has no edge: contour would warn and draw nothing.
    if mask is not None and mask.any() and not mask.all():
        axis.contour(mask.astype(np.float32), levels=[0.5], colors=OUTLINE_COLOR, linewidths=0.6)


def clip_outliers(heatmap: np.ndarray) -> np.ndarray:
    """The map rescaled so its top percent saturates: gradients are heavy-tailed, and scaled to their single
    largest pixel, all but a few pixels would show as nothing (the usual display of saliency maps)."""
    top = float(np.percentile(heatmap, SALIENCY_SATURATED))
    return np.clip(heatmap / top, 0, 1) if top > 0 else heatmap


def note(axis: Axes, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", fontsize=7, color=NOTE_COLOR, transform=axis.transAxes)


def short_name(name: object, limit: int) -> str:
    """An image's file name without its folders, cut to fit a label."""
    text = Path(str(name)).name
    return text if len(text) <= limit else text[:limit - 1] + "…"


def save_png(figure: Figure, path: Path) -> None:
    """The figure as a 256-colour PNG: heat maps over X-rays hold tens of thousands of colours, and a palette
    with error diffusion shows them alike at a third of the size (these PNGs are kept in git). PIL writes no
    time or software stamp, and both steps are deterministic, so the same inputs give the same bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    rgb = Image.fromarray(pixels)
    palette = rgb.quantize(256, method=Image.Quantize.MEDIANCUT)
    colours = palette.getpalette()
    # Median cut averages the white paper with the antialiased text on it into an off-white, and PIL looks
    # colours up on a coarse grid that would not tell pure white from it: make one entry white, paper to it.
    white = max(range(len(colours) // 3), key=lambda i: sum(colours[3 * i:3 * i + 3]))
    colours[3 * white:3 * white + 3] = [255, 255, 255]
    palette.putpalette(colours)
    indexed = rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
    indexed.paste(white, mask=Image.fromarray(np.where((pixels == 255).all(axis=-1), 255, 0).astype(np.uint8)))
    with atomic_path(path) as tmp:
        indexed.save(tmp, format="png", dpi=(DPI, DPI))
