"""Training in several processes with torchrun (DistributedDataParallel): one per GPU, or CPU processes
with the gloo backend. A single process is the same code with a world of one."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def writes(self) -> bool:
        """The first process validates, logs and writes the checkpoint; the others only train."""
        return self.rank == 0

    def share_of(self, batch_size: int) -> int:
        """Each process's part of a batch: the batch the optimizer steps on stays train.batch_size (a multiple
        of train.processes, checked with the params)."""
        return batch_size // self.world

    def shard_size(self, count: int) -> int:
        return -(-count // self.world)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return order
        padded = torch.cat([order, order[:self.shard_size(len(order)) * self.world - len(order)]])
        return padded[self.rank::self.world]

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model as trained: wrapped in DistributedDataParallel across processes, itself in one. The
        checkpoint is always written from the model itself, so its keys have no `module.` prefix."""
        if self.world == 1:
            return model
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of a number over the processes (each process's mean training loss)."""
        if self.world == 1:
            return value
        total = torch.tensor(value, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(total)
        return float(total) / self.world


SINGLE = Processes()


def join_processes(requested: torch.device) -> tuple[Processes, torch.device]:
    """This process's place among those torchrun started (RANK, WORLD_SIZE, LOCAL_RANK) and its device (its
    own GPU, LOCAL_RANK, or the CPU with gloo), after joining their group; one process, as requested, without
    torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE, requested
    processes = Processes(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = requested
    if requested.type == "cuda":
        device = torch.device("cuda", processes.local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return processes, device


def leave_processes() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def torchrun_command(processes: int, script: str, argv: list[str]) -> list[str] | None:
    """The command that runs `script` in `processes` processes on this machine, or None where this process is
    already one of them (started by that command, or by a user's own torchrun across machines)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "WORLD_SIZE" in os.environ and world != processes:
        raise ValueError(f"train.processes is {processes} but torchrun started {world} processes (WORLD_SIZE): "
                         f"set train.processes to the total number of processes over all machines")
    if processes == 1 or "WORLD_SIZE" in os.environ:
        return None
    # `--`: torchrun's parser would take options from the script's own command line, abbreviations too (the
    # stage's --log would be an ambiguous --log-dir, and an option torchrun alone matched would be lost silently).
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "--", script,
            *argv]


def run(command: list[str]) -> int:
    return subprocess.run(command).returncode
