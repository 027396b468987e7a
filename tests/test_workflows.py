"""The GitHub workflows as a team runs them: which steps see which secrets, what triggers them, what they run.
Their syntax and security audit are `.ci/run`'s linters (GitHub's workflow schema, zizmor), not tests."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
SECRET = re.compile(r"\$\{\{\s*secrets\.")
# What runs code the pull request may have changed: its package's build, its stages, its tests, its commands.
PULL_REQUEST_CODE = re.compile(r"dvc repro|dvc exp|pytest|pip install (--no-deps )?-e|\.ci/run|\bcxr\b|stages/")


def workflow(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1).
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return loaded


def steps(name: str) -> list[tuple[str, dict]]:
    return [(job_name, step) for job_name, job in workflow(name)["jobs"].items() for step in job["steps"]]


def test_secrets_reach_only_the_step_that_pulls_and_it_leaves_none_behind():
    for name in ("pr-report.yml", "tests.yml"):
        loaded = workflow(name)
        assert not SECRET.search(yaml.safe_dump(loaded.get("env", {}))), f"{name}: secrets at workflow level"
        for job_name, job in loaded["jobs"].items():
            assert not SECRET.search(yaml.safe_dump(job.get("env", {}))), f"{name}: secrets at job level ({job_name})"
    with_secrets = [step for name in ("pr-report.yml", "tests.yml") for _, step in steps(name)
                    if SECRET.search(yaml.safe_dump(step))]
    assert [step["name"] for step in with_secrets] == ["Pull what the team's DVC remote has"]
    (pull,) = with_secrets
    assert not PULL_REQUEST_CODE.search(pull["run"]), pull["run"]
    # The key file and the remote's settings are gone before the next step runs the pull request's stages.
    assert 'rm -f "$RUNNER_TEMP/dvc-ssh-key"' in pull["run"] and "dvc remote remove --local team" in pull["run"]
    after = [step for _, step in steps("pr-report.yml")]
    after = after[after.index(pull) + 1:]
    assert any(PULL_REQUEST_CODE.search(step.get("run", "")) for step in after)


def test_the_tests_workflow_runs_the_readme_test_command_after_the_quick_tier():
    loaded = workflow("tests.yml")
    assert set(loaded["on"]) == {"push", "pull_request"}
    runs = [step.get("run", "") for _, step in steps("tests.yml")]
    quick = next(i for i, run in enumerate(runs) if 'pytest -m "not pipeline and not slow"' in run)
    assert runs.index(".ci/run") > quick
    # On Debian with the lock's Python, as CI: Debian's sshd and Chromium are what the system tests expect.
    assert loaded["jobs"]["tests"]["container"].startswith("python:3.11-")
    readme = (REPO / "README.md").read_text()
    assert "\n.ci/run\n" in readme and 'pytest -m "not pipeline and not slow"' in readme


def github_glob(pattern: str) -> re.Pattern:
    """A filter pattern as GitHub matches it: `**` any characters, `*` any but a slash."""
    parts = re.split(r"(\*\*|\*)", pattern)
    return re.compile("".join({"**": ".*", "*": "[^/]*"}.get(part, re.escape(part)) for part in parts))


def test_documentation_changes_skip_the_pipeline_rebuild():
    ignored = [github_glob(p) for p in workflow("pr-report.yml")["on"]["pull_request"]["paths-ignore"]]
    for path in ("README.md", "docs/pipeline.md", "CHANGELOG.md", "LICENSE.md"):
        assert any(pattern.fullmatch(path) for pattern in ignored), path
    for path in ("params.yaml", "src/cxr/training/loop.py", "dvc.lock", "presets/radiography.yaml"):
        assert not any(pattern.fullmatch(path) for pattern in ignored), path


@pytest.mark.parametrize("name", ["pr-report.yml", "tests.yml"])
def test_pip_and_dvc_caches_are_keyed_on_their_locks(name):
    used = {step.get("uses", "").split("@")[0]: step for _, step in steps(name)}
    if "actions/setup-python" in used:
        python = used["actions/setup-python"]["with"]
        assert python["cache"] == "pip" and "requirements.lock" in python["cache-dependency-path"]
    else:  # in a container: pip's cache folder itself
        pip = used["actions/cache"]["with"]
        assert pip["path"] == "~/.cache/pip" and "hashFiles('requirements.lock')" in pip["key"]
    if name == "pr-report.yml":
        cache = used["actions/cache"]["with"]
        assert cache["path"] == ".dvc/cache" and "hashFiles('dvc.lock')" in cache["key"]
    # Every action pinned by commit: a moved tag cannot change what runs.
    assert all(re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", step["uses"]) for step in used.values() if "uses" in step)


def test_the_s3_extra_is_installed_from_its_lock():
    installs = [step["run"] for _, step in steps("pr-report.yml") if "pip install" in step.get("run", "")]
    assert any("-r requirements-s3.lock" in run for run in installs)
    assert not any(re.search(r"pip install \"?dvc-s3", run) for _, step in steps("pr-report.yml")
                   for run in [step.get("run", "")])
    lock = (REPO / "requirements-s3.lock").read_text()
    assert re.search(r"^dvc-s3==", lock, re.M)
    # Every package both locks pin, pinned alike.
    main = dict(re.findall(r"^([\w.-]+)==(\S+)", (REPO / "requirements.lock").read_text(), re.M))
    extra = dict(re.findall(r"^([\w.-]+)==(\S+)", lock, re.M))
    assert {name: (main[name], version) for name, version in extra.items() if name in main and main[name] != version} == {}
