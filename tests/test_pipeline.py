"""End to end: `dvc repro` in a temporary copy of the repository with tiny params."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_params, write_params

pytestmark = pytest.mark.pipeline

PIPELINE_FILES = ["dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"]


def _run(repo: Path, *command: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _dvc(repo: Path, *args: str) -> str:
    return _run(repo, sys.executable, "-m", "dvc", *args)


def _stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    repo = tmp_path_factory.mktemp("repo")
    for name in PIPELINE_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "stages", repo / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    write_params(repo, tiny_params())
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "tiny pipeline")
    return repo, _dvc(repo, "repro")


def test_repro_builds_every_run_and_the_report(pipeline_repo):
    repo, output = pipeline_repo
    params = tiny_params()
    expected = {f"train@{m}-{d}" for m in params["models"] for d in params["datasets"]}
    assert expected <= _stages_run(output)
    for dataset in params["datasets"]:
        for model in params["models"]:
            assert (repo / "metrics" / "classify" / dataset / f"{model}.json").is_file()
            assert (repo / "models" / dataset / f"{model}.pt").is_file()
    table = (repo / "reports" / "summary.md").read_text()
    assert len([line for line in table.splitlines() if line.startswith("| full") or line.startswith("| lungs")]) == 8
    assert (repo / "reports" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "Data and pipelines are up to date" in _dvc(repo, "status")
    shown = _dvc(repo, "metrics", "show")
    assert "metrics/classify/lungs/inception_v3.json" in shown and "macro_f1" in shown


def test_second_repro_runs_nothing(pipeline_repo):
    repo, _ = pipeline_repo
    output = _dvc(repo, "repro")
    assert _stages_run(output) == set()


def test_changing_one_model_param_reruns_only_that_model(pipeline_repo):
    repo, _ = pipeline_repo
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "baseline run")
    output = _dvc(repo, "exp", "run", "-S", "model.resnet18.lr=0.002")
    ran = _stages_run(output)
    assert {"train@resnet18-full", "train@resnet18-lungs"} <= ran
    allowed = {"train@resnet18-full", "train@resnet18-lungs", "evaluate@resnet18-full", "evaluate@resnet18-lungs", "report"}
    assert ran <= allowed, f"unrelated stages re-ran: {ran - allowed}"
    shown = _dvc(repo, "exp", "show", "--csv")
    assert "model.resnet18.lr" in shown and "0.002" in shown
