"""reports/index.html: every result of the pipeline in one self-contained page.

Figures are embedded as data: URIs and the style sheet is inline, so the page opens from disk, is mailed or
archived as one file, and makes no network request (no script, no web font, no CDN). Tables are the
summary's own markdown (cxr.report.summary), rendered by markdown-it; the page is built from the same
inputs into the same bytes (no date, no version stamp), so DVC only sees it change when a result does.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from markupsafe import Markup, escape

from cxr.io.files import write_text
from cxr.report.render import render

WARNING = ("Research software, not a medical device: these models and figures are for studying methods on the data "
           "they were trained on, not for diagnosis, triage or any decision about a patient.")


def png_of(figure) -> bytes:
    """A matplotlib figure as PNG bytes without a software stamp: the same inputs give the same bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    return buffer.getvalue()


@dataclass
class Section:
    id: str
    title: str
    blocks: list[str] = field(default_factory=list)

    def html(self) -> Markup:
        return Markup("\n".join(self.blocks))

    def heading(self, text: str) -> None:
        self.blocks.append(f"<h3>{escape(text)}</h3>")

    def text(self, markdown: str) -> None:
        """Paragraphs and pipe tables in markdown, as the summary writes them."""
        self.blocks.append(_markdown().render(markdown))

    def figure(self, png: bytes | Path, caption: str, alt: str) -> None:
        data = png.read_bytes() if isinstance(png, Path) else png
        encoded = base64.b64encode(data).decode("ascii")
        self.blocks.append(f'<figure><img src="data:image/png;base64,{encoded}" alt="{escape(alt)}">'
                           f"<figcaption>{escape(caption)}</figcaption></figure>")

    def details(self, summary: str, inner: Section) -> None:
        self.blocks.append(f"<details><summary>{escape(summary)}</summary>{inner.html()}</details>")

    def raw(self, html: str | Markup) -> None:
        self.blocks.append(str(html))


@functools.cache
def _markdown():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def write_page(path: Path, title: str, subtitle: str, banner: str, provenance: str, sections: Sequence[Section]) -> None:
    """`banner`: which data the page is about (summary.data_banner), above everything else; `provenance`: which
    checkpoints it shows (summary.provenance_line)."""
    page = render("page.html.jinja", title=title, subtitle=subtitle, banner=banner, provenance=provenance,
                  warning=WARNING, sections=sections)
    write_text(path, page)


def confusion_table(counts: np.ndarray, classes: Sequence[str], title: str) -> str:
    """A confusion matrix as a table, each cell shaded by its share of the true class's row."""
    head = "".join(f"<th>{escape(c)}</th>" for c in classes)
    rows = []
    for k, name in enumerate(classes):
        total = max(int(counts[k].sum()), 1)
        cells = "".join(f'<td style="background: rgba(36, 99, 160, {counts[k, j] / total * 0.75:.2f});'
                        f'{" color: #fff;" if counts[k, j] / total > 0.5 else ""}">{counts[k, j]}</td>'
                        for j in range(len(classes)))
        rows.append(f"<tr><th>{escape(name)}</th>{cells}</tr>")
    return (f"<table><caption>{escape(title)}</caption><tr><th>true \\ predicted</th>{head}</tr>"
            + "".join(rows) + "</table>")


def read_curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One dvclive .tsv (step, value, ...): steps and values."""
    lines = path.read_text().splitlines()[1:]
    values = np.array([[float(v) for v in line.split("\t")[:2]] for line in lines if line.strip()]).reshape(-1, 2)
    return values[:, 0], values[:, 1]


def curves_figure(panels: Sequence[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]], str]], xlabel: str,
                  per_row: int = 4) -> bytes:
    """One small plot per panel (title, {label: (x, y)}, y label), per_row to a row."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = -(-len(panels) // per_row)
    columns = min(len(panels), per_row)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis in axes[len(panels):]:
        axis.set_axis_off()
    for axis, (title, curves, ylabel) in zip(axes, panels):
        for label, (x, y) in curves.items():
            axis.plot(x, y, marker="o" if len(x) <= 30 else None, markersize=3, label=label)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(xlabel, fontsize=8)
        axis.set_ylabel(ylabel, fontsize=8)
        axis.tick_params(labelsize=7)
        if xlabel == "epoch":
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if curves:
            axis.legend(fontsize=7)
    figure.tight_layout()
    return png_of(figure)
