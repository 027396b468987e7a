"""The default run's tables in the docs, copied from reports/summary.md, so no quoted figure is older than its run.

A block of a markdown page

    <!-- reports/summary.md: Cross-dataset tests -->
    | ... the table ... |
    <!-- end -->

holds the table of the summary whose introducing paragraph starts with the text after the colon; the summary's
first table, which has no paragraph, is called "Classification". `cxr docs` rewrites every block after a run;
`cxr docs --check` (and the test suite) says which pages are out of date.
"""

from __future__ import annotations

import re
from pathlib import Path

from cxr.paths import SUMMARY_FILE

FIRST_TABLE = "Classification"
BLOCK = re.compile(r"(?P<open><!-- reports/summary\.md: (?P<name>[^>]*?) -->\n)(?P<body>.*?)(?P<close><!-- end -->)", re.S)


class DocsError(ValueError):
    """A block names no table of the summary, or more than one; the message names the page and the block."""


def summary_tables(summary: str) -> dict[str, str]:
    """Each table of the summary (its lines, newline-terminated), keyed by the first line of the text before it."""
    tables: dict[str, str] = {}
    lead, rows = FIRST_TABLE, []
    for line in [*summary.splitlines(), ""]:
        if line.startswith("|"):
            rows.append(line)
            continue
        if rows:
            tables[lead] = "\n".join(rows) + "\n"
            lead, rows = None, []
        if line.strip() and lead is None:
            lead = line
    return tables


def table_named(tables: dict[str, str], name: str, page: Path) -> str:
    matches = [table for lead, table in tables.items() if lead.startswith(name)]
    if len(matches) != 1:
        leads = "; ".join(lead[:40] for lead in tables)
        raise DocsError(f"{page}: the block '{name}' matches {len(matches)} tables of {SUMMARY_FILE} "
                        f"(it must start exactly one of: {leads})")
    return matches[0]


def render(page: Path, text: str, tables: dict[str, str]) -> str:
    return BLOCK.sub(lambda m: m["open"] + table_named(tables, m["name"], page) + m["close"], text)


def sync(pages: list[Path], summary: Path = SUMMARY_FILE, write: bool = True) -> list[Path]:
    """The pages whose blocks differ from the summary's tables; rewritten unless `write` is false."""
    tables = summary_tables(summary.read_text())
    stale = []
    for page in pages:
        text = page.read_text()
        new = render(page, text, tables)
        if new != text:
            stale.append(page)
            if write:
                page.write_text(new)
    return stale


def documentation_pages(root: Path = Path(".")) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]
