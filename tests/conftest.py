"""Shared fixtures: tiny params and a tiny synthetic raw dataset, so stages run in seconds."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

# Libraries that write environment variables when first imported (OpenCV its Qt paths, scikit-learn OpenMP's
# settings, torch's compiler its cache folder) are imported before the first test, so that the guard below sees
# only what tests and our code change.
import cv2  # noqa: F401
import pytest
import sklearn  # noqa: F401
import torch
import torchvision  # noqa: F401
import yaml

from tests.global_state import global_state_unchanged  # noqa: F401  (autouse: every test leaves process state as found)

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]

# Ultralytics reads these once, at its first import: this session's settings file and fonts go to a folder
# of its own, never the user's, whichever test imports it first (cxr.segment.yolo does the same per stage).
os.environ.update(YOLO_CONFIG_DIR=tempfile.mkdtemp(prefix="ultralytics-tests-"), YOLO_OFFLINE="1",
                  YOLO_AUTOINSTALL="false", YOLO_VERBOSE="false")


# pyproject's per-test limit is for ordinary tests; a pipeline test may build a shared pipeline first.
PIPELINE_TIMEOUT = 1500


# pytest-xdist hands each worker whole test files in collection order, two ahead (pyproject: --dist loadfile
# --no-loadscope-reorder): the files that build pipelines go first, longest first (their times on 2 cores in
# docs/testing.md), so the quick files fill in around them instead of one long file running alone at the end.
LONGEST_FIRST = ["test_pipeline.py", "test_presets.py", "test_shortcut.py", "test_experiments.py", "test_remote.py",
                 "test_distributed.py", "test_reproducible.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("pipeline") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(PIPELINE_TIMEOUT))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest in collection order


# Under pytest-xdist each worker takes its share of the cores, and so do the pipeline stages it starts.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // WORKERS))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def default_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def tiny_params(**overrides) -> dict:
    """The repository's params.yaml shrunk to a few small images, one epoch and the smallest inputs."""
    params = copy.deepcopy(default_params())
    params["generate"]["synthetic"].update(images_per_class=12, image_size=96)
    params["generate_radiography"]["synthetic_hospital2"].update(images_per_class=6, image_size=96, mask_size=80)
    params["prepare"]["image_size"] = 48
    params["train"].update(epochs=1, batch_size=8)
    params["evaluate"].update(bootstrap_resamples=100, batch_size=16)
    params["explain"].update(images_per_class=2, max_misclassified=2, road_percentiles=[50], smoothgrad_samples=2)
    params["segment"]["train"].update(image_size=64, epochs=1, batch_size=8)
    params["segment"]["gallery"] = 2
    params["device"] = "cpu"
    for name, entry in params["model"].items():
        entry["image_size"] = 75 if entry["arch"] == "inception_v3" else 32
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        node[key] = value
    return params


def tiny_pipeline_params() -> dict:
    """tiny_params with two of the four models: the plain ResNet path and InceptionV3's (its own input size and
    auxiliary head). Every stage of the pipeline still runs; each architecture is trained and explained at its
    real size in the unit tests."""
    return tiny_params(models=["resnet18", "inception_v3"])


def one_run_params() -> dict:
    """tiny_params cut to one model on the lungs view, its segmenter and the cascade: a whole pipeline in about
    a minute, for tests of what is done with a pipeline's results (remotes, experiments)."""
    params = tiny_params(models=["resnet18"], datasets=["lungs"],
                         cross_tests=[{"trained_on": "lungs", "tested_on": "lungs_segmented"}])
    params["segment"].update(train_on=["lungs"], evaluate_on=["lungs"])
    # No probe (its clean run is on the full view, which this pipeline leaves out): nothing reads the marked twin
    # and the other hospital any more.
    params.update(probe={"models": [], "datasets": [], "cross_tests": []}, shortcut=None, generate_radiography={})
    del params["source"]["synthetic_shortcut"], params["source"]["synthetic_hospital2"]
    for name in ("full", "outside", "hospital2_full", "hospital2_lungs", "shortcut_full"):
        del params["dataset"][name]
    return params


def write_params(directory: Path, params: dict) -> Path:
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder as the current directory, where stages look for params.yaml and data/."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic raw dataset (shared, read-only: copy it before changing it)."""
    from cxr.synthetic.generator import write_dataset

    out = tmp_path_factory.mktemp("raw") / "synthetic"
    generate = tiny_params()["generate"]["synthetic"]
    write_dataset(out, seed=7, images_per_class=generate["images_per_class"], image_size=generate["image_size"],
                  shortcut=0.0, follow_up_fraction=0.25, duplicate_fraction=0.2, progress=False)
    return out


# What a copy of the pipeline needs beside stages/, src/ and params.yaml.
PIPELINE_FILES = ["dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"]


def run_in(repo: Path, *command: str, capture: bool = True) -> str:
    """A command in a pipeline copy, which must succeed; its stdout. Without `capture`, its output is dropped: a
    command that leaves processes running (`dvc exp run --run-all`, whose queue workers outlive it) would
    otherwise be waited for until they end, since they hold the pipes."""
    # The copy's own src/ comes first on the path, so its stages run its library, not the installed one.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(repo / "src"),
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    result = subprocess.run(command, cwd=repo, env=env, stdout=output, stderr=output, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout or ""


def dvc_in(repo: Path, *args: str, capture: bool = True) -> str:
    return run_in(repo, sys.executable, "-m", "dvc", *args, capture=capture)


def changed_stages(repo: Path) -> set[str]:
    return set(json.loads(dvc_in(repo, "status", "--json")))


def copy_pipeline(target: Path) -> None:
    for name in PIPELINE_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, target / name)
    for folder in ("stages", "src", ".dvc/plots"):
        shutil.copytree(REPO / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))


def baseline_repo(repo: Path, params: dict, targets: list[str] | None = None) -> Path:
    """A git repository at `repo` with the pipeline and `params`, reproduced (all of it, or the `targets` stages and
    what they need) and committed."""
    copy_pipeline(repo)
    write_params(repo, params)
    run_in(repo, "git", "init", "-q")
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "commit", "-qm", "tiny pipeline")
    dvc_in(repo, "repro", *(targets or []))
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "commit", "-qm", "baseline run")
    return repo


def copy_repo(source: Path, target: Path) -> Path:
    """A copy of a reproduced pipeline (work tree, git history and DVC cache) to change without touching the
    original, which other tests share. DVC's lock files stay behind: a copy taken while another worker's `dvc`
    reads the original would otherwise start out locked by that process. The DVC cache's objects are linked, not
    copied: DVC writes each once, read-only, named by its hash, and never edits one."""
    objects = source / ".dvc" / "cache" / "files"

    def link_cache_objects(src: str, dst: str) -> None:
        if Path(src).is_relative_to(objects):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("lock", "rwlock", "rwlock.lock"),
                    copy_function=link_cache_objects)
    return target


def shared_pipeline(tmp_path_factory: pytest.TempPathFactory, name: str, params: dict) -> Path:
    """A pipeline at `params` reproduced once per test session, whichever xdist worker asks first (the others wait
    for it: pytest-xdist's recipe for session fixtures); a build that failed is retried by the next asker."""
    from filelock import FileLock

    # All workers' temporary folders share this parent (one worker alone: its own base folder).
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    repo, built = shared / name, shared / f"{name}.built"
    with FileLock(str(shared / f"{name}.lock")):
        if not built.exists():
            shutil.rmtree(repo, ignore_errors=True)
            baseline_repo(repo, params)
            built.touch()
    return repo


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline (every stage: views, runs, cross tests, probes, the segmenter, the report) at
    tiny_pipeline_params, reproduced and committed once per session. Shared: read it, or change a copy_repo of it."""
    return shared_pipeline(tmp_path_factory, "tiny-pipeline", tiny_pipeline_params())


@pytest.fixture(scope="session")
def one_run_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one_run_params pipeline reproduced and committed once per session. Shared: read it, or change a
    copy_repo of it."""
    return shared_pipeline(tmp_path_factory, "one-run-pipeline", one_run_params())


def stage(name: str) -> ModuleType:
    """The DVC entry point stages/<name>.py as a module (the entry points are scripts, not an installed package)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_stage(name: str, *args: str) -> None:
    stage(name).main(list(args))


# The stages a test runs in its own folder, given the paths dvc.yaml's commands pass them, under that folder.

def index_source(root: Path, source: str) -> Path:
    """The index stage of `source`; its index folder."""
    index = root / "data" / "index" / source
    run_stage("index", "--source", source, "--index", str(index),
              "--report", str(root / "reports" / "data" / "sources" / f"{source}.json"),
              "--audit", str(root / "metrics" / "data" / f"{source}.json"))
    return index


def prepare_view(root: Path, dataset: str, source: str = "synthetic") -> Path:
    """The prepare stage of `dataset` (a view of `source`, indexed); its prepared folder."""
    prepared = root / "data" / "prepared" / dataset
    run_stage("prepare", "--dataset", dataset, "--index", str(root / "data" / "index" / source), "--out", str(prepared),
              "--report", str(root / "reports" / "data" / "views" / f"{dataset}.json"))
    return prepared


def checkpoint_path(root: Path, dataset: str, model: str) -> Path:
    return root / "models" / dataset / f"{model}.pt"


def train_log_path(root: Path, dataset: str, model: str) -> Path:
    return root / "reports" / "train" / dataset / model


def pipeline_arguments(stage: str, **item: str) -> list[str]:
    """The arguments dvc.yaml's `stage` gives its entry point, `${item.<key>}` filled from `item`: its paths
    relative to the folder the stage runs in, as under `dvc repro`."""
    from cxr.paths import command_arguments

    return command_arguments(stage, pipeline=REPO / "dvc.yaml", **item)


def train_arguments(root: Path, model: str, dataset: str) -> list[str]:
    return ["--model", model, "--dataset", dataset, "--data", str(root / "data" / "prepared" / dataset),
            "--checkpoint", str(checkpoint_path(root, dataset, model)), "--log", str(train_log_path(root, dataset, model))]


def evaluation_folders(root: Path, dataset: str, tested_on: str | None = None) -> tuple[Path, Path, Path]:
    """(metrics, reports, plots) of the evaluate stage of `dataset`, or of its crosstest on `tested_on`."""
    if tested_on is None:
        return (root / "metrics" / "classify" / dataset, root / "reports" / "evaluate" / dataset,
                root / "reports" / "plots" / "evaluate" / dataset)
    pair = f"{dataset}-on-{tested_on}"
    return root / "metrics" / "cross" / pair, root / "reports" / "cross" / pair, root / "reports" / "plots" / "cross" / pair


def evaluation_files(root: Path, model: str, dataset: str, tested_on: str | None = None):
    """The files the evaluate stage writes for `model` (cxr.metrics.outputs.EvaluationFiles)."""
    from cxr.metrics.outputs import EvaluationFiles

    metrics, reports, _ = evaluation_folders(root, dataset, tested_on)
    return EvaluationFiles(metrics, reports, model)


def evaluate_arguments(root: Path, model: str, dataset: str, tested_on: str | None = None) -> list[str]:
    metrics, reports, plots = evaluation_folders(root, dataset, tested_on)
    return ["--model", model, "--dataset", dataset, *(["--tested-on", tested_on] if tested_on else []),
            "--models", str(root / "models" / dataset), "--data", str(root / "data" / "prepared" / (tested_on or dataset)),
            "--metrics", str(metrics), "--reports", str(reports), "--plots", str(plots)]


# CI sets this, so that a missing server or browser fails the run instead of skipping what it should test.
REQUIRE_SYSTEM = "CXR_TESTS_REQUIRE_SYSTEM"


def require_system(program: Path, package: str) -> None:
    """Skips the calling test, with the reason, where `program` is not installed, unless REQUIRE_SYSTEM is set
    (then it fails)."""
    if not Path(program).is_file():
        message = f"{program} not found: install {package}, as .ci/run does"
        if os.environ.get(REQUIRE_SYSTEM):
            pytest.fail(f"{message} ({REQUIRE_SYSTEM} is set: system tests must run here)")
        pytest.skip(message)


class NetworkBlocked(OSError):
    """Raised instead of opening a connection: tests never reach the network."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Makes every socket connection and name lookup fail; the returned list records each attempt."""
    attempts: list[tuple] = []

    def refuse(kind):
        def blocked(*args, **kwargs):
            attempts.append((kind, args[1:] if kind == "connect" else args))
            raise NetworkBlocked(f"network blocked in tests ({kind} {args[1:] if kind == 'connect' else args})")
        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts

