"""The README and the docs/ pages link to files and headings that exist, and quote the run's tables as they are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cxr.cli.docs import BLOCK, DocsError, documentation_pages, reruns_table, stage_families_mermaid, summary_tables, sync
from tests.conftest import REPO

PAGES = documentation_pages(REPO)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            found.add(github_anchor(match.group(1)))
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # commands, not links
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert broken == [], f"{page.relative_to(REPO)}: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / target.partition("#")[0]).resolve() for target in links(REPO / "README.md")}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []


def test_quoted_tables_are_the_committed_runs():
    """Every table a page copies from reports/summary.md is the committed run's (`cxr docs` after `dvc repro`), and
    the README's pipeline graph is dvc.yaml's."""
    quoted = {match["name"] for page in PAGES for match in BLOCK.finditer(page.read_text())}
    tables = summary_tables((REPO / "reports" / "summary.md").read_text())
    # Every table of the summary is quoted by some page, each through a block (no hand copy goes stale).
    assert {lead for lead in tables if not any(lead.startswith(name) for name in quoted)} == set()
    assert sync(PAGES, REPO / "reports" / "summary.md", write=False, root=REPO) == []
    assert "<!-- dvc dag: stage families -->\n```mermaid" in (REPO / "README.md").read_text()
    assert "<!-- code dependencies: what a change re-runs -->\n| module |" in (REPO / "docs" / "pipeline.md").read_text()


def test_a_fix_to_a_reader_or_a_figure_re_runs_only_the_stages_that_use_it():
    """The invalidation table of docs/pipeline.md, from dvc.yaml: a DICOM fix re-reads the raw data but retrains
    nothing; a figure's colour redraws the explanations and the report but runs no segmenter or classifier."""
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.*) \|$", reruns_table(REPO), re.M))
    families = {name: set(re.findall(r"(?:^|, )([a-z_]+)", row.partition(": ")[2])) for name, row in rows.items()}
    assert families["cxr/io/dicom.py"] == {"index", "prepare", "prepare_segmented"}
    assert families["cxr/explain/figures.py"] == {"explain", "probe_explain", "report"}
    assert families["cxr/training/"] == {"train", "probe_train"} and rows["cxr/cli/"] == "none"


SUMMARY = """| Dataset | Accuracy |
|---|---|
| full | 0.500 |

Cross-dataset tests (each model on another dataset's test split):

| Trained on | Accuracy |
|---|---|
| full | 0.400 |
"""


def test_a_block_is_rewritten_from_the_summary_and_names_its_table(tmp_path):
    summary, page = tmp_path / "summary.md", tmp_path / "page.md"
    summary.write_text(SUMMARY)
    page.write_text("Scores:\n\n<!-- reports/summary.md: Cross-dataset -->\n| stale |\n<!-- end -->\n\nAfter.\n")
    assert sync([page], summary) == [page]
    assert page.read_text() == ("Scores:\n\n<!-- reports/summary.md: Cross-dataset -->\n| Trained on | Accuracy |\n"
                                "|---|---|\n| full | 0.400 |\n<!-- end -->\n\nAfter.\n")
    assert sync([page], summary) == []
    summary.write_text(SUMMARY.replace("0.400", "0.450"))
    assert sync([page], summary, write=False) == [page] and "0.400" in page.read_text()
    page.write_text("<!-- reports/summary.md: Calibration -->\n<!-- end -->\n")
    with pytest.raises(DocsError, match=r"page.md: the block 'Calibration' matches 0 tables"):
        sync([page], summary)


def test_cxr_docs_check_names_the_stale_page_and_cxr_docs_fixes_it(tmp_path, monkeypatch, capsys):
    from cxr import cli

    # The summary is wherever dvc.yaml's report stage writes it, here not where the repository's does.
    (tmp_path / "dvc.yaml").write_text("stages:\n  report:\n    cmd: python stages/report.py --summary results/summary.md\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- reports/summary.md: Classification -->\n| old |\n<!-- end -->\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["docs", "--check"]) == 1
    assert "error: results/summary.md not found: run `dvc repro`" in capsys.readouterr().err
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.md").write_text(SUMMARY)
    assert cli.main(["docs", "--check"]) == 1
    assert "tables older than results/summary.md in: README.md; run `cxr docs`" in capsys.readouterr().err
    assert cli.main(["docs"]) == 0 and cli.main(["docs", "--check"]) == 0
    assert "| full | 0.500 |" in (tmp_path / "README.md").read_text()


def test_cxr_docs_outside_a_checkout_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    from cxr import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["docs", "--check"]) == 1
    assert capsys.readouterr().err == "error: no dvc.yaml here: run this in the repository's root folder\n"


def test_the_graph_has_a_box_per_stage_family_and_no_arrow_a_path_implies(tmp_path):
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "params.yaml").write_text("parts: [a, b]\n")
    (tmp_path / "raw").write_text("x")
    (tmp_path / "dvc.yaml").write_text("""stages:
  split:
    foreach: ${parts}
    do:
      cmd: cp raw out-${item}
      deps: [raw]
      outs:
        - out-${item}
  merge:
    cmd: cat out-a out-b raw > merged
    deps: [out-a, out-b, raw]
    outs: [merged]
  load:
    cmd: cat raw > loaded
    deps: [raw]
    outs: [loaded]
  publish:
    cmd: cat merged out-a loaded > published
    deps: [merged, out-a, loaded]
    outs: [published]
""")
    assert stage_families_mermaid(tmp_path) == """```mermaid
flowchart LR
  split["split (2)"]
  merge
  load
  publish
  split --> merge
  merge --> publish
  load --> publish
```
"""
