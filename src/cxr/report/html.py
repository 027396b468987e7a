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

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{{ title }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d1d1f; }
header { background: #24323f; color: #fff; padding: 1.2em 2em; }
header p { margin: 0.3em 0 0; color: #d5dde5; }
nav { padding: 0.6em 2em; background: #eef1f4; position: sticky; top: 0; border-bottom: 1px solid #d0d6dc; }
nav a { margin-right: 1.2em; color: #24323f; text-decoration: none; font-weight: 600; }
main { padding: 0 2em 3em; max-width: 1500px; }
section { border-bottom: 1px solid #e3e7eb; padding-bottom: 1em; }
h2 { margin-top: 1.6em; } h3 { margin-top: 1.3em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 13px; }
th, td { border: 1px solid #cfd5db; padding: 3px 8px; text-align: left; }
th { background: #f3f5f7; }
figure { margin: 1em 0 1.4em; display: inline-block; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #e3e7eb; }
figcaption { font-size: 13px; color: #4a5560; max-width: 60em; margin-top: 0.3em; }
.banner { background: #e8f1fb; border-left: 4px solid #2463a0; padding: 0.6em 1em; margin: 1em 0; font-weight: 600; }
.provenance { font-size: 13px; color: #4a5560; font-family: monospace; }
.warning { background: #fff4e5; border-left: 4px solid #e08a00; padding: 0.6em 1em; margin: 1em 0; }
.matrices { display: flex; flex-wrap: wrap; gap: 1.5em; }
.matrices table td { text-align: right; min-width: 2.5em; }
details { margin: 0.4em 0; } summary { cursor: pointer; font-weight: 600; }
</style>
</head>
<body>
<header><h1>{{ title }}</h1><p>{{ subtitle }}</p></header>
<nav>{% for section in sections %}<a href="#{{ section.id }}">{{ section.title }}</a>{% endfor %}</nav>
<main>
<p class="banner">{{ banner }}</p>
<p class="provenance">{{ provenance }}</p>
<p class="warning">{{ warning }}</p>
{% for section in sections %}<section id="{{ section.id }}"><h2>{{ section.title }}</h2>
{{ section.html() }}
</section>
{% endfor %}</main>
</body>
</html>
"""

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
    from jinja2 import Environment

    page = Environment(autoescape=True).from_string(PAGE).render(title=title, subtitle=subtitle, banner=banner,
                                                                 provenance=provenance,
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
