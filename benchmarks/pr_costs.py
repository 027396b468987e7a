"""What a run of .github/workflows/pr-report.yml costs, from its own steps run in order in clean clones.

    python benchmarks/pr_costs.py [--skip-install]   # measure, write benchmarks/pr_costs.json and the docs table
    python benchmarks/pr_costs.py --docs             # rewrite the table of docs/experiments.md from the JSON file

Scenarios: the default pipeline unchanged and changed in one model's params (`model.resnet18.lr`), each with
nothing cached (a first run), with the DVC cache of an earlier run restored (what actions/cache gives), and with
the team's remote (a folder remote the current repository pushes to). A documentation-only change runs none of
it (the workflow's paths-ignore). The install step is timed once into a new environment from pip's cache (what
setup-python's pip cache gives). Minutes and bytes per step go to the JSON file docs/experiments.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from results import replace_block  # noqa: E402  (benchmarks/ is no package)

RESULTS = REPO / "benchmarks" / "pr_costs.json"
PAGE = REPO / "docs" / "experiments.md"
BEGIN = "<!-- costs of a pull-request run: generated from benchmarks/pr_costs.json by `python benchmarks/pr_costs.py --docs` -->"
END = "<!-- end of pull-request costs -->"
CHANGE = ("model.resnet18.lr", "0.002")


def megabytes(count: int) -> str:
    return f"{count / 1e6:,.0f} MB" if count < 1e9 else f"{count / 1e9:.1f} GB"


def render(results: dict) -> str:
    """The page's generated block: one row per scenario, seconds per step, and what the caches hold."""
    rows = ["| pull request | starts from | stages run / restored | pull | `dvc repro` | `cxr pr-report` | total | DVC cache after |",
            "|---|---|---|---|---|---|---|---|"]
    starts = {"nothing": "nothing cached, no remote", "cache": "the last run's DVC cache", "remote": "the team's remote"}
    for run in results["runs"]:
        seconds = run["seconds"]
        pull = seconds["pull"] if "pull" in seconds else (
            seconds["restore DVC cache"] + seconds["dvc checkout"] if "restore DVC cache" in seconds else None)
        rows.append(f"| {'one model changed' if run['params changed'] else 'unchanged'} | {starts[run['from']]} | "
                    f"{run['stages run']} / {run['stages restored']} | {'' if pull is None else f'{pull:.0f} s'} | "
                    f"{seconds['dvc repro']:.0f} s | {seconds['cxr pr-report']:.0f} s | {run['total minutes']} min | "
                    f"{megabytes(run['DVC cache bytes after'])} |")
    install = (f"; the install took {results['install seconds']:.0f} s" if "install seconds" in results
               else ", about what pip's cache holds; the install step was not timed, this machine's pip cache being empty")
    lines = [f"Measured {results['date']} on {results['machine']} by `python benchmarks/pr_costs.py`: the workflow's steps "
             f"in order, in clean clones of the default pipeline; the one-model change is `{results['change']}`. "
             f"A documentation-only pull request runs none of it (`paths-ignore`). The environment is "
             f"{megabytes(results['environment bytes'])} installed{install}; the remote held "
             f"{megabytes(results['remote bytes'])}. \"pull\" is the remote's pull, or the cache's restore and `dvc checkout`.", "", *rows]
    return f"{BEGIN}\n" + "\n".join(lines) + f"\n{END}"


def update_page(results: dict, page: Path = PAGE) -> bool:
    """Rewrites the page's block; False when it was up to date."""
    return replace_block(page, render(results), BEGIN, END)


def run(command: str, cwd: Path, env: dict | None = None) -> tuple[float, str]:
    """Seconds the shell command took, and its output; it must succeed."""
    start = time.perf_counter()
    result = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"`{command}` failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return round(time.perf_counter() - start, 1), result.stdout


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) if path.exists() else 0


def clone(work: Path, name: str) -> Path:
    target = work / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    (target / ".venv").symlink_to(REPO / ".venv")
    return target


def change_params(repo: Path) -> None:
    key, value = CHANGE
    subprocess.run([sys.executable, "-c", "import sys, yaml; from pathlib import Path; p = Path('params.yaml'); "
                    "d = yaml.safe_load(p.read_text()); d['model']['resnet18']['lr'] = float(sys.argv[1]); "
                    "p.write_text(yaml.safe_dump(d, sort_keys=False))", value], cwd=repo, check=True)


def scenario(work: Path, name: str, changed: bool, source: str, remote: Path, cache: Path, env: dict) -> dict:
    """The workflow's steps after the install: restore the DVC cache (or not), pull (or not), repro, report."""
    repo = clone(work, name.replace(" ", "-").replace(",", ""))
    if changed:
        change_params(repo)
    steps = {}
    if source == "cache":
        start = time.perf_counter()
        shutil.copytree(cache, repo / ".dvc" / "cache")
        steps["restore DVC cache"] = round(time.perf_counter() - start, 1)
        # Without it `dvc repro` would rerun every stage with a `cache: false` output, which DVC's run cache skips.
        steps["dvc checkout"], _ = run("dvc checkout --allow-missing -q", repo, env)
    if source == "remote":
        steps["pull"], _ = run(f"dvc remote add --local --default team {remote} && dvc pull --allow-missing -q; "
                               "status=$?; dvc remote remove --local team; exit $status", repo, env)
    steps["dvc repro"], output = run("dvc repro", repo, env)
    steps["cxr pr-report"], _ = run("cxr pr-report --base origin/main --out pr-report", repo, env)
    return {"scenario": name, "params changed": changed, "from": source, "seconds": steps,
            "stages run": output.count("Running stage"), "stages restored": output.count("is cached - skipping run"),
            "total minutes": round(sum(steps.values()) / 60, 1), "DVC cache bytes after": size(repo / ".dvc" / "cache")}


def install_seconds(work: Path) -> tuple[float, int]:
    """A new environment from the locks, pip's cache warm (as setup-python's cache restores it)."""
    venv = work / "venv"
    seconds, _ = run(f"{sys.executable} -m venv {venv} && {venv}/bin/pip install -q -r requirements.lock "
                  f"-r requirements-s3.lock && {venv}/bin/pip install -q --no-deps -e .", REPO)
    return seconds, size(venv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-install", action="store_true", help="leave the install step out")
    parser.add_argument("--docs", action="store_true", help=f"only rewrite the table of {PAGE.relative_to(REPO)}")
    args = parser.parse_args()
    if args.docs:
        print(f"{PAGE.relative_to(REPO)} " + ("updated" if update_page(json.loads(args.out.read_text())) else "up to date"))
        return
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with tempfile.TemporaryDirectory(prefix="pr-costs-") as tmp:
        work = Path(tmp)
        # The team's remote and an earlier run's cache: what the current repository's results push and hold.
        remote = work / "remote"
        run(f"dvc remote add --local pr-costs {remote} && dvc push -q -r pr-costs; status=$?; "
            "dvc remote remove --local pr-costs; exit $status", REPO, env)
        results = {"date": date.today().isoformat(), "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, "
                   f"{platform.system()}, no GPU", "change": "=".join(CHANGE), "remote bytes": size(remote), "runs": []}
        if args.skip_install:
            results["environment bytes"] = size(REPO / ".venv")  # what pip's cache holds, about
        else:
            results["install seconds"], results["environment bytes"] = install_seconds(work)
        # The cache a first run leaves is what actions/cache saves and the next run restores.
        cache = work / "unchanged-from-nothing" / ".dvc" / "cache"
        # A change rebuilt from nothing costs what the unchanged pipeline does: everything runs either way.
        for changed, source in ((False, "nothing"), (False, "cache"), (False, "remote"), (True, "cache"), (True, "remote")):
            name = f"{'one model changed' if changed else 'unchanged'}, from {source}"
            results["runs"].append(scenario(work, name, changed, source, remote, cache, env))
            print(json.dumps(results["runs"][-1]), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    update_page(results)
    print(f"wrote {args.out} and the table of {PAGE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
