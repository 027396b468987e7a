"""The benchmark's figures, kept in benchmarks/results.json, and the performance tables of docs/performance.md
made from them.

    python benchmarks/results.py --docs    # rewrite the generated block of docs/performance.md from results.json

Each section of the file (start-up, pipeline, one per throughput setting) carries the date and machine it was
measured on, and `benchmarks/benchmark.py` replaces only the sections it measured, so a run with
`--skip-pipeline` or on a GPU keeps the others with their own dates. tests/test_benchmark_results.py checks that
the page's block is what this file renders from results.json: no number there is older than its file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results.json"
PAGE = REPO / "docs" / "performance.md"
BEGIN = "<!-- benchmark results: generated from benchmarks/results.json by `python benchmarks/results.py --docs` -->"
END = "<!-- end of benchmark results -->"

PIPELINE_TARGET_S = 600  # the default `dvc repro` from a fresh clone on 2 CPU cores
NOOP_TARGET_RATIO = 1.5
STARTUP_TARGET_RATIO = 1.2
THROUGHPUT_TARGET = {"cpu": 0.95, "cuda": 0.9}


def load(path: Path = RESULTS) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save(results: dict, path: Path = RESULTS) -> None:
    """Written whole or not at all: a benchmark killed half-way leaves the previous file."""
    text = json.dumps(results, indent=2, sort_keys=True) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def stage_family(stage: str) -> str:
    return stage.split("@", 1)[0]


def measured_on(section: dict) -> str:
    machine = section["machine"]
    return f"measured {section['date']} on {machine['cpu_cores']} CPU cores, {machine['device']}, torch {machine['torch']}"


def verdict(met: bool, how_far: str) -> str:
    return "met" if met else f"**not met**, {how_far}"


def pipeline_tables(pipeline: dict, startup: dict | None) -> list[str]:
    total, stages = pipeline["from_scratch_s"], pipeline["stages"]
    lines = [f"Whole pipeline ({measured_on(pipeline)}):", "",
             "| what | measured | floor | ratio | target |", "|---|---|---|---|---|",
             f"| `dvc repro` from scratch, default params, {len(stages)} stages | {total:.0f} s | | | "
             f"at most {PIPELINE_TARGET_S} s: {verdict(total <= PIPELINE_TARGET_S, f'{total - PIPELINE_TARGET_S:.0f} s over')} |"]
    noop, floor, ratio = pipeline["noop_s"], pipeline["noop_floor_s"], pipeline["noop_ratio"]
    lines.append(f"| `dvc repro` with nothing changed (median of {pipeline['noop_repeats']}) | {noop:.2f} s "
                 f"| {floor:.2f} s (DVC alone: {len(stages)} trivial stages) "
                 f"| {ratio:.2f} | at most {NOOP_TARGET_RATIO}: {verdict(ratio <= NOOP_TARGET_RATIO, f'{ratio:.2f}')} |")
    if startup:
        seconds, ratios = startup["seconds"], startup["ratio"]
        torch_floor = seconds["import torch, torchvision"]
        for stage in ("train", "evaluate", "explain"):
            if stage in seconds:
                ratio = ratios[stage]
                lines.append(f"| start-up of `{stage}` (`python stages/{stage}.py --help`, every import; median of "
                             f"{startup['repeats']}, {startup['date']}) | {seconds[stage]:.2f} s | {torch_floor:.2f} s "
                             f"(`import torch, torchvision`) | {ratio:.2f} | at most {STARTUP_TARGET_RATIO}: "
                             f"{verdict(ratio <= STARTUP_TARGET_RATIO, f'{ratio:.2f}')} |")
    families: dict[str, list[float]] = {}
    for stage, seconds in stages.items():
        families.setdefault(stage_family(stage), []).append(seconds)
    lines += ["", "Where the time goes (each stage from its start to the next one's, as `dvc repro` runs it, "
              "start-up and DVC's own work included):", "",
              "| stage | runs | seconds | share | slowest run |", "|---|---|---|---|---|"]
    for family, times in sorted(families.items(), key=lambda item: -sum(item[1])):
        slowest = max((s for s in stages if stage_family(s) == family), key=stages.__getitem__)
        lines.append(f"| {family} | {len(times)} | {sum(times):.0f} | {sum(times) / total:.0%} "
                     f"| `{slowest}` {stages[slowest]:.0f} s |")
    return lines


def throughput_table(name: str, section: dict) -> list[str]:
    # The section's name starts with the device type it was measured on ("cuda, study sizes").
    target = THROUGHPUT_TARGET[name.split(",")[0]]
    lines = [f"Training throughput, {name} ({measured_on(section)}; median of {section['repeats']} alternating "
             f"repeats of {section['batches']} batches; target: at least {target} of the better bare loop):", "",
             "| model | input px | batch | train stage img/s | bare loop img/s, default / channels_last "
             "| stage / better bare |", "|---|---|---|---|---|---|"]
    for row in section["rows"]:
        ratio = row["stage"] / max(row["bare"], row["bare_channels_last"])
        lines.append(f"| {row['model']} | {row['input_px']} | {row['batch']} | {row['stage']:.1f} "
                     f"| {row['bare']:.1f} / {row['bare_channels_last']:.1f} "
                     f"| {ratio:.3f}{'' if ratio >= target else ': **not met**'} |")
    return lines


def render(results: dict) -> str:
    """The page's generated block (between the markers), from results.json's contents."""
    parts: list[list[str]] = []
    if "pipeline" in results:
        parts.append(pipeline_tables(results["pipeline"], results.get("startup")))
    for name, section in sorted(results.get("throughput", {}).items()):
        parts.append(throughput_table(name, section))
    body = "\n\n".join("\n".join(part) for part in parts) or "No benchmark has been run yet."
    return f"{BEGIN}\n{body}\n{END}"


def generated_block(text: str, begin: str = BEGIN, end: str = END) -> str:
    match = re.search(re.escape(begin) + r".*?" + re.escape(end), text, flags=re.S)
    if match is None:
        raise SystemExit(f"error: no generated benchmark block (the lines {begin!r} ... {end!r})")
    return match.group(0)


def replace_block(page: Path, block: str, begin: str = BEGIN, end: str = END) -> bool:
    """Replaces the page's block between the markers (`block` includes them); whether it changed."""
    text = page.read_text()
    new = text.replace(generated_block(text, begin, end), block)
    if new != text:
        page.write_text(new)
    return new != text


def update_page(results: dict, page: Path = PAGE) -> bool:
    """Replaces the page's block with the rendering of `results`; whether it changed."""
    return replace_block(page, render(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", action="store_true", help=f"rewrite the generated block of {PAGE.relative_to(REPO)}")
    args = parser.parse_args()
    if args.docs:
        print(f"{PAGE.relative_to(REPO)} " + ("updated" if update_page(load()) else "already up to date"))
    else:
        print(render(load()))


if __name__ == "__main__":
    main()
