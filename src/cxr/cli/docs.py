"""The default run's tables in the docs, copied from reports/summary.md, so no quoted figure is older than its run.

A block of a markdown page

    <!-- reports/summary.md: Cross-dataset tests -->
    | ... the table ... |
    <!-- end -->

holds the table of the summary whose introducing paragraph starts with the text after the colon; the summary's
first table, which has no paragraph, is called "Classification". `cxr docs` rewrites every block after a run;
`cxr docs --check` (and the test suite) says which pages are out of date.

A block `<!-- dvc dag: stage families -->` ... `<!-- end -->` holds the pipeline's graph as GitHub renders
it (a mermaid flowchart), one box per stage family (`train` for every `train@<model>-<dataset>`) with its
number of stages, drawn from the stages `dvc.yaml` resolves to with the params of the page's repository;
an arrow that a longer path implies is left out.

A block `<!-- code dependencies: what a change re-runs -->` ... `<!-- end -->` holds, per library module, the
stages whose declared code dependencies cover it: what `dvc repro` re-runs after a change to that file.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

FIRST_TABLE = "Classification"
DAG_BLOCK = re.compile(r"(?P<open><!-- dvc dag: stage families -->\n)(?P<body>.*?)(?P<close><!-- end -->)", re.S)
RERUNS_BLOCK = re.compile(r"(?P<open><!-- code dependencies: what a change re-runs -->\n)(?P<body>.*?)(?P<close><!-- end -->)",
                          re.S)
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


def table_named(tables: dict[str, str], name: str, page: Path, summary: Path) -> str:
    matches = [table for lead, table in tables.items() if lead.startswith(name)]
    if len(matches) != 1:
        leads = "; ".join(lead[:40] for lead in tables)
        raise DocsError(f"{page}: the block '{name}' matches {len(matches)} tables of {summary} "
                        f"(it must start exactly one of: {leads})")
    return matches[0]


def resolved_pipeline(root: Path) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Every stage dvc.yaml resolves to with its dependency paths, in dvc.yaml's order, and the graph's edges."""
    from dvc.repo import Repo

    # DVC's graph goes through pygtrie, which warns about its own API once per path (not ours to fix).
    with Repo(str(root)) as repo, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="dvc")
        stages = {stage.name: [dep.def_path for dep in stage.deps] for stage in repo.index.stages}
        edges = [(dependency.name, stage.name) for stage, dependency in repo.index.graph.edges()]
    return stages, edges


def families(stages: list[str]) -> str:
    """Stage names by family, in order: `train (10), report`."""
    counts = Counter(stage.split("@")[0] for stage in stages)
    return ", ".join(f"{name} ({count})" if count > 1 else name for name, count in counts.items())


def reruns_table(root: Path) -> str:
    """Per library module, the stages whose code dependencies cover it, by family; a module no stage reads
    (the command line's) re-runs nothing."""
    stages, _ = resolved_pipeline(root)
    code = {name: [dep for dep in deps if dep.startswith("src/")] for name, deps in stages.items()}
    # A package's __init__.py is left out beside its modules: it holds no more than a docstring where the
    # modules are declared one by one (tests/test_layout.py), and shares their row where the package is.
    modules = sorted(path.relative_to(root).as_posix() for path in (root / "src").rglob("*.py")
                     if path.name != "__init__.py" or len(list(path.parent.glob("*.py"))) == 1)
    reruns = {module: [name for name, deps in code.items() if any(module == dep or module.startswith(f"{dep}/")
                                                                  for dep in deps)] for module in modules}
    by_package: dict[str, list[str]] = {}
    for module in modules:
        by_package.setdefault(module.rsplit("/", 1)[0], []).append(module)
    rows = ["| module | stages a change re-runs |", "|---|---|"]
    for package, members in by_package.items():
        # A package declared as a whole re-runs the same stages whatever module changes: one row.
        same = len(members) > 1 and all(reruns[m] == reruns[members[0]] for m in members)
        for module in [f"{package}/"] if same else members:
            covered = reruns[members[0] if same else module]
            rows.append(f"| `{module.removeprefix('src/')}` | {f'{len(covered)}: {families(covered)}' if covered else 'none'} |")
    return "\n".join(rows) + "\n"


def stage_families_mermaid(root: Path) -> str:
    """`dvc dag --mermaid` collapsed to stage families: a box per family, an arrow from what it reads."""
    names, edges = resolved_pipeline(root)
    stages = list(names)
    family = {stage: stage.split("@")[0] for stage in stages}
    counts = Counter(family.values())  # in dvc.yaml's order
    order = list(counts)
    arrows = {(family[a], family[b]) for a, b in edges if family[a] != family[b]}
    # An arrow that a longer path already implies is left out (prepare feeds the report through every run).
    arrows = sorted(((a, b) for a, b in arrows if not _reachable(a, b, arrows - {(a, b)})),
                    key=lambda edge: (order.index(edge[0]), order.index(edge[1])))
    lines = ["```mermaid", "flowchart LR"]
    lines += [f'  {name}["{name} ({counts[name]})"]' if counts[name] > 1 else f"  {name}" for name in order]
    lines += [f"  {a} --> {b}" for a, b in arrows]
    return "\n".join([*lines, "```"]) + "\n"


def _reachable(start: str, goal: str, arrows: set[tuple[str, str]]) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for a, b in arrows:
            if a == node and b not in seen:
                if b == goal:
                    return True
                seen.add(b)
                todo.append(b)
    return False


def render(page: Path, text: str, tables: dict[str, str], summary: Path, dag: str | None = None,
           reruns: str | None = None) -> str:
    """The page with its blocks filled: `tables` from the `summary` file (named in errors), the graph, the reruns."""
    text = BLOCK.sub(lambda m: m["open"] + table_named(tables, m["name"], page, summary) + m["close"], text)
    if dag is not None:
        text = DAG_BLOCK.sub(lambda m: m["open"] + dag + m["close"], text)
    if reruns is not None:
        text = RERUNS_BLOCK.sub(lambda m: m["open"] + reruns + m["close"], text)
    return text


def sync(pages: list[Path], summary: Path, write: bool = True, root: Path | None = None) -> list[Path]:
    """The pages whose blocks differ from the tables of `summary` (the report stage's, `cxr docs` reads where
    dvc.yaml has it written) and, given the repository's `root`, from its pipeline graph and its code dependencies;
    rewritten unless `write` is false."""
    tables = summary_tables(summary.read_text())
    dag = reruns = None
    stale = []
    for page in pages:
        text = page.read_text()
        if root is not None and dag is None and DAG_BLOCK.search(text):
            dag = stage_families_mermaid(root)
        if root is not None and reruns is None and RERUNS_BLOCK.search(text):
            reruns = reruns_table(root)
        new = render(page, text, tables, summary, dag, reruns)
        if new != text:
            stale.append(page)
            if write:
                page.write_text(new)
    return stale


def documentation_pages(root: Path = Path(".")) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]
