"""The `cxr` command's conventions: a version, a description and an example per command, and every user error a
one-line message with exit status 1 (failed) or 2 (usage), never a traceback."""

from __future__ import annotations

import argparse
import re
from importlib.metadata import version

import pytest

from cxr import cli


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """cxr in this process: an exception other than argparse's exit would be the traceback a user sees."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    if isinstance(code, str):  # SystemExit("error: ..."): Python prints the message and exits with 1
        code, err = 1, err + code + "\n"
    return code, out, err


def test_version_is_the_installed_packages(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"cxr {version('cxr-pipeline')}"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    return dict(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


def test_every_command_is_described_with_an_example_and_named_in_the_overview():
    commands = subcommands()
    assert {"inspect", "preset", "check", "pr-report", "predict", "docs", "experiments"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description and parser.epilog and f"Example:\n  cxr {name}" in parser.epilog, name
        assert f"cxr {name}" in cli.__doc__, name


# Each command given what a user gets wrong, in a folder that is not the repository.
BAD_INPUT = {
    "no command": ([], 2),
    "unknown command": (["train"], 2),
    "inspect a missing path": (["inspect", "missing-folder"], 1),
    "inspect with an unknown layout": (["inspect", "missing-folder", "--layout", "kagle"], 2),
    "preset outside the repository": (["preset", "radiography"], 2),
    "check without params.yaml": (["check"], 1),
    "predict with an unknown model": (["predict", "film.png", "--model", "resnet18-full"], 1),
    "pr-report against a missing revision": (["pr-report", "--base", "no-such-branch"], 1),
    "docs outside the repository": (["docs", "--check"], 1),
    "experiments outside the repository": (["experiments"], 1),
    "experiments sorted by an unknown score": (["experiments", "--sort-by", "f1"], 2),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_a_user_error_is_one_line_and_an_exit_status(case, tmp_path, monkeypatch, capsys):
    argv, status = BAD_INPUT[case]
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == status, (case, err)
    message = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "errors.pydantic.dev" not in err
    # argparse prints its usage above its one-line error; our own errors are a single line.
    assert re.match(r"(cxr( [a-z-]+)?: )?error: ", message[-1]), err
    if status == 1:
        assert len(message) == 1, err
