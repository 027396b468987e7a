"""Benchmarks behind the performance tables of docs/performance.md (not a test: timings depend on the machine).

    python benchmarks/benchmark.py            # everything below, the pipeline in a temporary copy of this repository
    python benchmarks/benchmark.py --skip-pipeline --prepared-from .   # start-up and throughput only, on ./data/prepared

Every measurement is against a floor measured in the same run, alternating with it, so a busy machine
hits both alike; medians of the repeats are reported.

1. Start-up: wall time of `python stages/<name>.py --help` for every stage (the entry points import the
   library at the top, argparse runs after the imports) against `python -c pass` and
   `python -c "import torch, torchvision"`.
2. `dvc repro` wall time from scratch, in a temporary copy of this repository (default params.yaml), and each
   stage's share: from the line where DVC starts it to the line where it starts the next.
3. `dvc repro` wall time when nothing changed, against DVC's own floor: the same command in a fresh
   repository with as many trivial stages (one small dependency and one output each).
4. Training images/s of the train stage's own loop (batch gather, augmentation, normalisation,
   forward, backward, optimizer and scheduler step) against a bare PyTorch loop over ready-made tensors,
   same model, batch size, input size and autocast (bf16 on a GPU that has it), in the default memory format
   and in channels_last; the ratio is to the better of the two. For the study's GPU sizes:
   `python benchmarks/benchmark.py --skip-pipeline --prepared-from . --study-sizes` (224 px, 299 for
   InceptionV3, batch 128); add `--skip-startup` on a machine whose start-up figures should not replace the
   stored ones.

The figures go to benchmarks/results.json (only the sections measured are replaced) and the performance
tables of docs/performance.md are rendered from it: `python benchmarks/results.py --docs`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cxr.io.arrays import SplitArrays, intensity_stats, split_dir  # noqa: E402
from cxr.models.inference import SplitBatches, mixed_precision, model_input, to_device_format  # noqa: E402
from cxr.models.params import ModelParams  # noqa: E402
from cxr.models.registry import build_model  # noqa: E402
from cxr.params import Classes, Device, Names, load_params, resolve_device  # noqa: E402
from cxr.paths import PIPELINE_FILE, stage_path  # noqa: E402
from cxr.training.augment import augment_batch  # noqa: E402
from cxr.training.loop import class_weights, train_one_epoch  # noqa: E402
from cxr.training.order import EpochOrders  # noqa: E402
from cxr.training.params import TrainParams  # noqa: E402
from cxr.training.processes import SINGLE  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
import results as stored  # noqa: E402

PARAMS = REPO / "params.yaml"
PIPELINE_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"]
CODE_FOLDERS = ["src", "stages"]
STAGES = ["generate", "index", "prepare", "train", "evaluate", "explain", "report"]
FLOOR_IMPORT = "import torch, torchvision"
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info")


def git_env(repo: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    if repo is not None:
        # The stages of a copy import the copy's library, not the one installed from this checkout.
        env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def commit_all(target: Path) -> None:
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "benchmark"]):
        subprocess.run(command, cwd=target, env=git_env(), check=True)


def copy_repository(target: Path) -> None:
    for name in PIPELINE_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, target / name)
    for name in CODE_FOLDERS:
        shutil.copytree(REPO / name, target / name, ignore=IGNORE)
    commit_all(target)


def stage_count(repo: Path) -> int:
    """Stages of `dvc.yaml` after foreach/matrix expansion, as DVC counts them."""
    out = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=repo,
                         env=git_env(repo), check=True, capture_output=True, text=True).stdout
    return len(out.split())


def floor_repository(target: Path, stages: int) -> None:
    """DVC's floor: a fresh git+DVC repository of `stages` trivial stages, one small dependency and output each."""
    target.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=target, env=git_env(), check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=target, env=git_env(), check=True)
    shutil.copy(REPO / ".dvc/config", target / ".dvc/config")  # the same DVC settings as ours
    (target / "in").mkdir()
    pipeline = {}
    for i in range(stages):
        (target / "in" / f"{i}.txt").write_text(f"{i}\n")
        pipeline[f"s{i}"] = {"cmd": f"echo {i} > out/{i}.txt", "deps": [f"in/{i}.txt"], "outs": [f"out/{i}.txt"]}
    (target / "out").mkdir()
    (target / "dvc.yaml").write_text(yaml.safe_dump({"stages": pipeline}, sort_keys=False))
    commit_all(target)


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


RUNNING_STAGE = re.compile(r"^Running stage '(?P<stage>[^']+)'")


def timed_repro(repo: Path) -> tuple[float, dict[str, float]]:
    """Wall time of `dvc repro` and of each stage it ran, from DVC's "Running stage" line to the next one (or
    to the end): the stage's start-up and DVC's own work for it included."""
    env = dict(git_env(repo), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    starts: list[tuple[str, float]] = []
    with subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        for line in process.stdout:
            if match := RUNNING_STAGE.match(line):
                starts.append((match["stage"], time.perf_counter()))
    end = time.perf_counter()
    if process.returncode:
        raise SystemExit(f"error: dvc repro failed in {repo} (exit {process.returncode})")
    ends = [at for _, at in starts[1:]] + [end]
    return end - start, {stage: round(stop - at, 2) for (stage, at), stop in zip(starts, ends)}


def alternating_runs(commands: dict[str, tuple[list[str], Path, dict[str, str]]], repeats: int) -> dict[str, list[float]]:
    """Wall times of each command over `repeats` rounds, one run of each per round."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (command, cwd, env) in commands.items():
            times[name].append(timed(command, cwd, env))
    return times


def median_ratio(times: list[float], floor: list[float]) -> float:
    """Median of the per-round ratios: robust to the load of a shared machine changing between rounds."""
    return statistics.median(t / f for t, f in zip(times, floor))


def startup_times(repeats: int) -> dict[str, list[float]]:
    python = sys.executable
    env = git_env(REPO)
    commands = {"python -c pass": ([python, "-c", "pass"], REPO, env),
                FLOOR_IMPORT: ([python, "-c", "import torch, torchvision"], REPO, env)}
    for stage in STAGES:
        commands[stage] = ([python, f"stages/{stage}.py", "--help"], REPO, env)
    return alternating_runs(commands, repeats)


def startup_section(times: dict[str, list[float]]) -> dict:
    floor = times[FLOOR_IMPORT]
    return {"repeats": len(floor), "seconds": {name: round(statistics.median(values), 3) for name, values in times.items()},
            "ratio": {name: round(median_ratio(values, floor), 3) for name, values in times.items()}}


STUDY_BATCH = 128
STUDY_SIZES = {"inception_v3": 299}  # the study's input sizes; 224 px for every other architecture
STUDY = {"on": False}  # --study-sizes


def run_settings(model_name: str):
    """(model params, train params, classes, device) of the default params.yaml, or at the study's sizes."""
    model_key = f"model.{model_name}"
    params = load_params({"classes": Classes, "device": Device, "train": TrainParams, model_key: ModelParams}, PARAMS)
    model_params, train_params = params[model_key], params["train"]
    if STUDY["on"]:
        model_params = model_params.model_copy(update={"image_size": STUDY_SIZES.get(model_params.arch, 224)})
        train_params = train_params.model_copy(update={"batch_size": STUDY_BATCH})
    return model_params, train_params, params["classes"], resolve_device(params["device"])


def stage_throughput(model_name: str, dataset: str, prepared_root: Path, batches: int):
    """The train stage's own loop: its batches (the split resident on the GPU, one gather per batch), augmentation,
    normalisation, model layout, optimizer and scheduler, over the first `batches` batches of an epoch's order."""
    model_params, train_params, classes, device = run_settings(model_name)
    torch.manual_seed(train_params.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)  # as the train stage runs on CPU
    else:
        torch.backends.cudnn.benchmark = True  # as the train stage runs on CUDA
    prepared = prepared_root / stage_path("prepare", "--out", pipeline=prepared_root / PIPELINE_FILE, key=dataset)
    split = SplitArrays.load(split_dir(prepared, "train"))
    model = to_device_format(build_model(model_params.arch, len(classes), model_params.image_size), device)
    mean, std = intensity_stats(split.images)
    split_batches = SplitBatches(split, train_params.batch_size, device)
    orders = EpochOrders(split.labels, len(classes), train_params, SINGLE)
    criterion = nn.CrossEntropyLoss(weight=class_weights(split, len(classes), train_params).to(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_params.lr, weight_decay=train_params.weight_decay,
                                  fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10 * len(split_batches))
    rng = torch.Generator().manual_seed(train_params.seed)
    precision = mixed_precision(device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)

    def to_input(images: torch.Tensor) -> torch.Tensor:
        return model_input(images, model_params.image_size, mean, std,
                           lambda pixels: augment_batch(pixels, train_params.augment, rng))

    images = min(len(split), batches * train_params.batch_size)

    def run() -> None:
        order = orders.next_epoch()[:images]
        train_one_epoch(model, split_batches.in_order(order), to_input, criterion, optimizer, scheduler, scaler,
                        precision, device, quiet=True)

    return timer(run, images, device)


def bare_throughput(model_name: str, batches: int, channels_last: bool):
    """A bare PyTorch loop over ready-made input tensors on the device: forward, loss, backward, AdamW step."""
    model_params, train_params, classes, device = run_settings(model_name)
    batch = train_params.batch_size
    torch.manual_seed(train_params.seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(model_params.arch, len(classes), model_params.image_size).to(device, memory_format=memory_format)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_params.lr)
    precision = mixed_precision(device)
    size = model_params.image_size
    data = [(torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format),
             torch.randint(0, len(classes), (batch,), device=device)) for _ in range(batches)]

    def run() -> None:
        for inputs, labels in data:
            with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
                outputs = model(inputs)
                logits = outputs.logits if hasattr(outputs, "logits") else outputs
                loss = nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return timer(run, batches * batch, device)


def timer(run, images: int, device: torch.device):
    """Warms up once, then returns a function that times one more run in images/s."""
    run()

    def images_per_second() -> float:
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        return images / (time.perf_counter() - start)

    return images_per_second


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(run, device: torch.device, repeats: int) -> float:
    """Median wall time of `run()` over `repeats`, the device synchronised around each."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine(device: torch.device) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu_cores": os.cpu_count(), "device": gpu or device.type, "torch": torch.__version__,
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-pipeline", action="store_true", help="only start-up and throughput")
    parser.add_argument("--skip-startup", action="store_true",
                        help="keep the stored start-up figures (a GPU machine's throughput run leaves the 2-core ones)")
    parser.add_argument("--prepared-from", type=Path, help="repository whose data/prepared to use (with --skip-pipeline)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per model and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed repeats per loop (median reported)")
    parser.add_argument("--startup-repeats", type=int, default=5, help="alternating start-up repeats (median reported)")
    parser.add_argument("--noop-repeats", type=int, default=5, help="alternating no-op repro repeats (median reported)")
    parser.add_argument("--study-sizes", action="store_true", help="throughput at 224 px (299 for InceptionV3), batch 128")
    parser.add_argument("--results", type=Path, default=stored.RESULTS,
                        help="the JSON file whose measured sections are replaced (default: %(default)s)")
    args = parser.parse_args()
    STUDY["on"] = args.study_sizes
    if args.skip_pipeline and args.prepared_from is None:
        parser.error("--skip-pipeline needs --prepared-from")

    params = load_params({"device": Device, "datasets": Names, "models": Names}, PARAMS)
    device = resolve_device(params["device"])
    stamp = {"date": datetime.date.today().isoformat(), "machine": machine(device)}
    results = stored.load(args.results)
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, device {device}")
    if not args.skip_startup:
        results["startup"] = stamp | startup_section(startup_times(args.startup_repeats))
        stored.save(results, args.results)
    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as scratch:
        prepared_root = args.prepared_from
        if not args.skip_pipeline:
            repo, floor = Path(scratch) / "repo", Path(scratch) / "floor"
            repo.mkdir()
            copy_repository(repo)
            from_scratch, stage_seconds = timed_repro(repo)
            floor_repository(floor, stage_count(repo))
            timed([sys.executable, "-m", "dvc", "repro"], floor, git_env(floor))  # its own first run
            repro = [sys.executable, "-m", "dvc", "repro"]
            no_op = alternating_runs({"ours": (repro, repo, git_env(repo)), "floor": (repro, floor, git_env(floor))},
                                     args.noop_repeats)
            results["pipeline"] = stamp | {
                "from_scratch_s": round(from_scratch, 1), "stages": stage_seconds, "noop_repeats": args.noop_repeats,
                "noop_s": round(statistics.median(no_op["ours"]), 3),
                "noop_floor_s": round(statistics.median(no_op["floor"]), 3),
                "noop_ratio": round(median_ratio(no_op["ours"], no_op["floor"]), 3)}
            stored.save(results, args.results)
            prepared_root = repo
        rows = []
        for model_name in params["models"]:
            timers = (stage_throughput(model_name, params["datasets"][0], prepared_root, args.batches),
                      bare_throughput(model_name, args.batches, channels_last=False),
                      bare_throughput(model_name, args.batches, channels_last=True))
            # Alternating repeats, so a busy moment of the machine hits all loops alike.
            timings = [[time_one() for time_one in timers] for _ in range(args.repeats)]
            stage, bare, bare_cl = (statistics.median(t[i] for t in timings) for i in range(3))
            model_params, train_params, _, _ = run_settings(model_name)
            rows.append({"model": model_name, "input_px": model_params.image_size, "batch": train_params.batch_size,
                         "stage": round(stage, 1), "bare": round(bare, 1), "bare_channels_last": round(bare_cl, 1)})
            print(rows[-1], flush=True)
        sizes = "study sizes" if args.study_sizes else "default sizes"
        results.setdefault("throughput", {})[f"{device.type}, {sizes}"] = stamp | {
            "repeats": args.repeats, "batches": args.batches, "rows": rows}
        stored.save(results, args.results)
    print(stored.render(results))


if __name__ == "__main__":
    main()
