"""The README's experiment recipes at tiny scale: a queued sweep run by two workers, a readable `dvc exp show`
and `cxr experiments` sorted by macro-F1, and one experiment applied to the workspace and pushed for the team."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import copy_repo, dvc_in, run_in

pytestmark = pytest.mark.pipeline

HEADLINE = "metrics/headline.json"
RUN = "lungs/resnet18"


@pytest.fixture(scope="module")
def repo(one_run_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared one-run pipeline: this module's experiments are applied and pushed from it."""
    return copy_repo(one_run_pipeline, tmp_path_factory.mktemp("experiments") / "repo")


def experiments(repo: Path) -> dict[str, dict]:
    """name -> {params, metrics} of the experiments on top of the workspace's commit (dvc exp show --json)."""
    shown = json.loads(dvc_in(repo, "exp", "show", "--json"))
    found = {}
    for commit in shown:
        for branch in commit.get("experiments") or []:
            for rev in branch.get("revs") or []:
                data = rev.get("data") or {}
                found[rev.get("name") or rev["rev"]] = {
                    "params": data.get("params", {}).get("params.yaml", {}).get("data", {}),
                    "headline": data.get("metrics", {}).get(HEADLINE, {}).get("data", {}),
                }
    return found


@pytest.fixture(scope="module")
def swept(repo: Path) -> tuple[Path, str]:
    """The README's sweep: two learning rates queued and run by two workers, waited for; the queue's status."""
    dvc_in(repo, "exp", "run", "--queue", "-S", "model.resnet18.lr=0.002,0.003")
    try:
        dvc_in(repo, "exp", "run", "--run-all", "-j", "2", capture=False)
        status = dvc_in(repo, "queue", "status")
    finally:
        dvc_in(repo, "queue", "stop")  # workers may stay idle: none is left behind
    assert "Queued" not in status and "Running" not in status, status
    return repo, status


def test_a_queued_sweep_runs_on_two_workers_and_shows_sorted(swept):
    repo, status = swept
    assert "Failed" not in status, status
    runs = experiments(repo)
    assert sorted(r["params"]["model"]["resnet18"]["lr"] for r in runs.values()) == [0.002, 0.003]
    assert all(0 <= r["headline"]["macro_f1"][RUN] <= 1 for r in runs.values())
    # The README's view: one row per experiment, its learning rate and macro-F1, best first.
    table = dvc_in(repo, "exp", "show", "--csv", "--drop", ".*", "--keep",
                   rf"Experiment|model\.resnet18\.lr|macro_f1\.{RUN}$", "--sort-by", f"macro_f1.{RUN}",
                   "--sort-order", "desc")
    header, *rows = [line.split(",") for line in table.strip().splitlines()]
    assert sorted(header) == sorted(["Experiment", "model.resnet18.lr", f"macro_f1.{RUN}"])
    scores = [float(row[header.index(f"macro_f1.{RUN}")]) for row in rows if row[0] in runs]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)


def test_dvc_exp_show_opens_with_the_headline_in_full(swept, monkeypatch):
    """`dvc exp show` as typed, 200 columns wide: the first metric columns are headline scores, every experiment's
    in full digits (the table goes on to the right, where DVC's pager scrolls)."""
    repo, _ = swept
    monkeypatch.setenv("COLUMNS", "200")
    lines = dvc_in(repo, "exp", "show").splitlines()
    header = next(line for line in lines if "Experiment" in line)
    first = [name for name in header.split() if name not in ("Experiment", "Created", "State", "Executor")][0]
    assert first.startswith("macro_f1."), header[:200]
    column = header.index(first) + len(first)  # the scores are right-aligned under their name
    rows = {name: [line for line in lines if f"[{name}]" in line] for name in experiments(repo)}
    assert all(len(found) == 1 for found in rows.values()), lines[:8]
    shown = {name: found[0][:column].split()[-1] for name, found in rows.items()}
    assert all(cell[0].isdigit() and "…" not in cell for cell in shown.values()), shown
    run = first.split(".", 1)[1]
    assert {name: float(cell) for name, cell in shown.items()} == {
        name: r["headline"]["macro_f1"][run] for name, r in experiments(repo).items()}


def test_cxr_experiments_lists_runs_best_first_in_120_columns(swept, monkeypatch):
    from cxr.cli import main

    repo, _ = swept
    header, *rows = run_in(repo, "cxr", "experiments", "--run", RUN).splitlines()
    assert all(len(line) <= 120 for line in [header, *rows])
    assert header.split()[:3] == ["Experiment", "Run", "Macro-F1"]
    by_name = {row.split()[0]: row for row in rows}
    for name, run in experiments(repo).items():
        assert f"model.resnet18.lr={run['params']['model']['resnet18']['lr']}" in by_name[name]
    scores = [float(row.split()[2]) for row in rows]
    assert scores == sorted(scores, reverse=True) and len(rows) >= 3  # both experiments and the commit
    monkeypatch.chdir(repo)
    assert main(["experiments", "--run", "nothing/*"]) == 1


def test_an_experiment_is_applied_and_pushed(swept, tmp_path):
    repo, _ = swept
    name = sorted(experiments(repo))[0]
    lr = experiments(repo)[name]["params"]["model"]["resnet18"]["lr"]
    dvc_in(repo, "exp", "apply", name)
    assert f"lr: {lr}" in (repo / "params.yaml").read_text()
    # Sharing it: its git refs to the team's git remote, its outputs to the DVC remote.
    shared = tmp_path / "shared.git"
    run_in(tmp_path, "git", "init", "-q", "--bare", str(shared))
    run_in(repo, "git", "remote", "add", "team", str(shared))
    # --local: the experiment commits predate this remote; the local config applies to every revision.
    dvc_in(repo, "remote", "add", "--local", "-f", "team-store", str(tmp_path / "store"))
    dvc_in(repo, "exp", "push", "-r", "team-store", "team", name)
    refs = run_in(repo, "git", "ls-remote", "team")
    assert "refs/exps/" in refs and name in refs
    assert any((tmp_path / "store").rglob("*"))
    run_in(repo, "git", "checkout", "params.yaml")
