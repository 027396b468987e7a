"""The README's experiment recipes at tiny scale: a queued sweep run by two workers, a readable `dvc exp show`
sorted by macro-F1, and one experiment applied to the workspace and pushed for the team."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import copy_repo, dvc_in, run_in

pytestmark = pytest.mark.pipeline

METRIC = "metrics/classify/lungs/resnet18.json"


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
                    "metrics": data.get("metrics", {}).get(METRIC, {}).get("data", {}),
                }
    return found


def test_a_queued_sweep_runs_on_two_workers_and_shows_sorted(repo):
    dvc_in(repo, "exp", "run", "--queue", "-S", "model.resnet18.lr=0.002,0.003")
    dvc_in(repo, "queue", "start", "-j", "2", capture=False)
    try:
        deadline = time.monotonic() + 900
        while "Queued" in (status := dvc_in(repo, "queue", "status")) or "Running" in status:
            assert time.monotonic() < deadline, f"the sweep did not finish:\n{status}"
            time.sleep(5)
    finally:
        dvc_in(repo, "queue", "stop")  # workers may stay idle: none is left behind
    assert "Failed" not in status, status
    runs = experiments(repo)
    assert sorted(r["params"]["model"]["resnet18"]["lr"] for r in runs.values()) == [0.002, 0.003]
    assert all(0 <= r["metrics"]["macro_f1"] <= 1 for r in runs.values())
    # The README's view: one row per experiment, its learning rate and macro-F1, best first.
    table = dvc_in(repo, "exp", "show", "--csv", "--drop", ".*", "--keep",
                 r"Experiment|model\.resnet18\.lr|metrics/classify/.*:macro_f1$", "--sort-by", f"{METRIC}:macro_f1",
                 "--sort-order", "desc")
    header, *rows = [line.split(",") for line in table.strip().splitlines()]
    assert sorted(header) == sorted(["Experiment", "model.resnet18.lr", f"{METRIC}:macro_f1"])
    scores = [float(row[header.index(f"{METRIC}:macro_f1")]) for row in rows if row[0] in runs]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)


def test_an_experiment_is_applied_and_pushed(repo, tmp_path):
    if not experiments(repo):
        dvc_in(repo, "exp", "run", "-S", "model.resnet18.lr=0.002")
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
