"""Benchmarks behind the README's performance table (not a test: timings depend on the machine).

    python benchmarks/benchmark.py            # whole default pipeline from scratch, no-op repro, train throughput
    python benchmarks/benchmark.py --skip-pipeline --prepared-from .   # throughput only, on ./data/prepared

1. `dvc repro` wall time from scratch, in a temporary copy of this repository (default params.yaml).
2. `dvc repro` wall time when nothing changed (median of 3).
3. Training images/s of the train stage's own loop (batch transfer, augmentation, normalisation,
   forward, backward, optimizer and scheduler step) against a bare PyTorch loop over ready-made tensors,
   same model, batch size and input size; median of alternating repeats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.datasets import SplitArrays, intensity_stats, model_input  # noqa: E402
from stages.models import build_model, mixed_precision, resolve_device  # noqa: E402
from stages.params import load_params  # noqa: E402
from stages.paths import split_file  # noqa: E402
from stages.train import class_weights, train_one_epoch, training_loader  # noqa: E402

PIPELINE_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"]


def copy_repository(target: Path) -> None:
    for name in PIPELINE_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, target / name)
    shutil.copytree(REPO / "stages", target / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    env = git_env()
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "benchmark"]):
        subprocess.run(command, cwd=target, env=env, check=True)


def git_env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
                GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")


def timed_repro(repo: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=git_env(), check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def stage_throughput(model_name: str, dataset: str, prepared_root: Path, batches: int):
    params = load_params(REPO / "params.yaml")
    model_params, train_params = params.model[model_name], params.train
    torch.manual_seed(params.seed)
    device = resolve_device(params.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)  # as the train stage runs on CPU
    split = SplitArrays.load(prepared_root / split_file(dataset, "train"))
    model = build_model(model_params.arch, len(params.classes), model_params.image_size).to(device)
    mean, std = intensity_stats(split.images)
    loader = training_loader(split, train_params, len(params.classes), params.seed)
    criterion = nn.CrossEntropyLoss(weight=class_weights(split, len(params.classes), train_params).to(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_params.lr, weight_decay=train_params.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10 * len(loader))
    rng = torch.Generator().manual_seed(params.seed)
    precision = mixed_precision(device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)

    def to_input(images: torch.Tensor) -> torch.Tensor:
        return model_input(images, model_params.image_size, mean, std, train_params.augment, rng)

    subset = torch.utils.data.Subset(loader.dataset, range(min(len(split), batches * train_params.batch_size)))
    timed_loader = torch.utils.data.DataLoader(subset, batch_size=train_params.batch_size, shuffle=True,
                                               generator=torch.Generator().manual_seed(0))
    def run() -> None:
        train_one_epoch(model, timed_loader, to_input, criterion, optimizer, scheduler, scaler, precision, device)

    return timer(run, len(subset), device)


def bare_throughput(model_name: str, batches: int):
    params = load_params(REPO / "params.yaml")
    model_params, batch = params.model[model_name], params.train.batch_size
    torch.manual_seed(params.seed)
    device = resolve_device(params.device)
    model = build_model(model_params.arch, len(params.classes), model_params.image_size).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_params.lr)
    precision = mixed_precision(device)
    size = model_params.image_size
    data = [(torch.randn(batch, 3, size, size, device=device), torch.randint(0, 3, (batch,), device=device))
            for _ in range(batches)]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-pipeline", action="store_true", help="only the throughput comparison")
    parser.add_argument("--prepared-from", type=Path, help="repository whose data/prepared to use (with --skip-pipeline)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per model and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed repeats per loop (median reported)")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"device {resolve_device(load_params(REPO / 'params.yaml').device)}")
    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as scratch:
        prepared_root = args.prepared_from
        if not args.skip_pipeline:
            repo = Path(scratch)
            copy_repository(repo)
            from_scratch = timed_repro(repo)
            no_op = statistics.median(timed_repro(repo) for _ in range(3))
            print(f"| `dvc repro` from scratch (default params) | {from_scratch:.0f} s |")
            print(f"| `dvc repro` with nothing changed (median of 3) | {no_op:.2f} s |")
            prepared_root = repo
        if prepared_root is None:
            parser.error("--skip-pipeline needs --prepared-from")
        params = load_params(REPO / "params.yaml")
        print("| model | input px | batch | train stage img/s | bare loop img/s | ratio |")
        print("|---|---|---|---|---|---|")
        for model_name in params.models:
            stage_timer = stage_throughput(model_name, params.datasets[0], prepared_root, args.batches)
            bare_timer = bare_throughput(model_name, args.batches)
            # Alternating repeats, so a busy moment of the machine hits both loops alike.
            timings = [(stage_timer(), bare_timer()) for _ in range(args.repeats)]
            stage = statistics.median(t[0] for t in timings)
            bare = statistics.median(t[1] for t in timings)
            print(f"| {model_name} | {params.model[model_name].image_size} | {params.train.batch_size} "
                  f"| {stage:.1f} | {bare:.1f} | {stage / bare:.3f} |", flush=True)


if __name__ == "__main__":
    main()
