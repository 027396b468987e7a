"""Train one classifier on prepared split arrays, keeping the epoch with the best validation macro-F1."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from tqdm import tqdm

from cxr.io.arrays import SplitArrays, intensity_stats
from cxr.io.files import atomic_dir
from cxr.io.log import epoch_log
from cxr.io.weights import load_tensors
from cxr.metrics.classification import validation_scores
from cxr.models.checkpoints import save_checkpoint
from cxr.models.inference import SplitBatches, mixed_precision, model_input, predict_probabilities, to_device_format
from cxr.models.params import ModelParams
from cxr.models.registry import build_model, pretrained_normalization, uses_aux_head
from cxr.training.augment import augment_batch
from cxr.training.determinism import reproducible
from cxr.training.order import EpochOrders
from cxr.training.params import TrainParams
from cxr.training.processes import SINGLE, Processes
from cxr.training.resume import load_point, random_states, remove_point, restore_random_states, save_point


def train_classifier(train_split: SplitArrays, val_split: SplitArrays, classes: list[str], model_params: ModelParams,
                     train_params: TrainParams, device: torch.device, checkpoint: Path, log_dir: Path,
                     meta: dict, desc: str = "training", processes: Processes = SINGLE,
                     resume: tuple[Path, str] | None = None) -> dict:
    """Trains, then writes the best epoch's checkpoint and the per-epoch dvclive log; returns the checkpoint meta.

    The log is written to a temporary folder that replaces the old one only together with the new
    checkpoint, so a killed run leaves the previous log and checkpoint as they were, still matching.
    Under torchrun (`processes`), each process trains on its shard of every batch and only the first
    validates, logs and writes.

    `resume` (a file and the run's key, cxr.training.resume.run_key; one process only): the state is saved
    there after every epoch, a killed run goes on from its last completed epoch, and the file is deleted
    with the checkpoint written.
    """
    if resume is not None and processes.world > 1:
        raise ValueError("resuming is for a single process: under torchrun each process would need its own point")

    with reproducible(train_params.seed, device):
        check_every_class_present(train_split, classes)
        model = to_device_format(build_model(model_params.arch, len(classes), model_params.image_size, model_params.weights),
                                 device)
        mean, std = input_normalization(model_params.arch, model_params.weights, train_split)

        train_batches = SplitBatches(train_split, processes.share_of(train_params.batch_size), device,
                                     drop_last=processes.shard_size(len(train_split)) % processes.share_of(train_params.batch_size) == 1)
        orders = EpochOrders(train_split.labels, len(classes), train_params, processes)
        val_batches = SplitBatches(val_split, train_params.batch_size, device) if processes.writes else None
        criterion = nn.CrossEntropyLoss(weight=class_weights(train_split, len(classes), train_params).to(device))
        trained = processes.wrap(model, device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=model_params.lr, weight_decay=train_params.weight_decay,
                                      fused=device.type == "cuda")
        steps = train_batches.batches_of(processes.shard_size(len(train_split)))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train_params.epochs * steps)
        # One augmentation stream per process: the shards of a batch get different draws, as one process would.
        augment_rng = torch.Generator().manual_seed(train_params.seed + processes.rank)

        def to_input(images: torch.Tensor) -> torch.Tensor:
            return model_input(images, model_params.image_size, mean, std,
                               lambda pixels: augment_batch(pixels, train_params.augment, augment_rng))

        precision = mixed_precision(device)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)

        best = {"macro_f1": -1.0, "loss": float("inf"), "epoch": -1, "state": None}
        generators = {"orders": orders.generator, "augment": augment_rng}
        logged: list[dict[str, float]] = []
        point = load_point(*resume) if resume is not None else None
        if point is not None:
            model.load_state_dict(point["model"])
            optimizer.load_state_dict(point["optimizer"])
            scheduler.load_state_dict(point["scheduler"])
            scaler.load_state_dict(point["scaler"])
            restore_random_states(point["random"], generators, device)
            best, logged = point["best"], point["logged"]
            print(f"{desc}: resuming after epoch {len(logged)} of {train_params.epochs} ({resume[0]})", flush=True)
        with atomic_dir(log_dir) if processes.writes else contextlib.nullcontext() as log_tmp:
            with epoch_log(log_tmp) if processes.writes else contextlib.nullcontext() as live:
                for values in logged:  # the completed epochs' lines, as they were logged
                    for name, value in values.items():
                        live.log_metric(name, value)
                    live.next_step()
                for epoch in range(len(logged), train_params.epochs):
                    batches = train_batches.in_order(orders.next_epoch())
                    train_loss = train_one_epoch(trained, batches, to_input, criterion, optimizer, scheduler, scaler,
                                                 precision, device, f"{desc} epoch {epoch + 1}/{train_params.epochs}",
                                                 total=steps, quiet=not processes.writes)
                    train_loss = processes.mean(train_loss, device)
                    if not processes.writes:
                        continue  # the first process validates and keeps the best epoch; the others go on training
                    probabilities = predict_probabilities(model, val_batches, model_params.image_size, mean, std, device)
                    scores = validation_scores(val_split.labels, probabilities, len(classes))
                    values = {"train/loss": train_loss, "val/loss": scores["loss"], "val/accuracy": scores["accuracy"],
                              "val/macro_f1": scores["macro_f1"], "lr": scheduler.get_last_lr()[0]}
                    for name, value in values.items():
                        live.log_metric(name, value)
                    live.next_step()
                    logged.append(values)
                    print(f"{desc} epoch {epoch + 1}: train loss {train_loss:.4f}, "
                          f"val loss {scores['loss']:.4f}, val macro-F1 {scores['macro_f1']:.4f}", flush=True)
                    if scores["macro_f1"] > best["macro_f1"] or (scores["macro_f1"] == best["macro_f1"]
                                                                 and scores["loss"] < best["loss"]):
                        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                        best = {"macro_f1": scores["macro_f1"], "loss": scores["loss"], "epoch": epoch + 1, "state": state}
                    if resume is not None and epoch + 1 < train_params.epochs:
                        save_point(resume[0], resume[1], {
                            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "best": best,
                            "logged": logged, "random": random_states(generators, device)})
                if processes.writes:
                    live.summary["best"] = {"epoch": best["epoch"], "val_macro_f1": best["macro_f1"]}
            if not processes.writes:
                return meta

            model.load_state_dict(best["state"])
            meta = {
                **meta,
                "arch": model_params.arch,
                "classes": list(classes),
                "image_size": model_params.image_size,
                "aux_logits": uses_aux_head(model_params.arch, model_params.image_size),
                "mean": [float(v) for v in mean],
                "std": [float(v) for v in std],
                "weights": model_params.weights,
                "epoch": best["epoch"],
                "val_macro_f1": float(best["macro_f1"]),
                "seed": train_params.seed,
                "processes": processes.world,
            }
            save_checkpoint(checkpoint, model, meta)
        if resume is not None:
            remove_point(resume[0])
        return meta


def train_one_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    to_input: Callable[[torch.Tensor], torch.Tensor], criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                    precision: torch.dtype | None, device: torch.device, desc: str = "training",
                    total: int | None = None, quiet: bool = False) -> float:
    """One pass over the training batches; returns the mean training loss."""
    model.train()
    # Summed on the device: reading the loss back after every batch would make the CPU wait for the GPU each time.
    running_loss, seen = torch.zeros((), dtype=torch.float64, device=device), 0
    progress = tqdm(batches, desc=desc, total=total, leave=False, disable=True if quiet else None)
    for step, (images, labels) in enumerate(progress):
        inputs = to_input(images)
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            loss = classification_loss(model(inputs), labels, criterion)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        running_loss += loss.detach().double() * len(labels)
        seen += len(labels)
        if step % PROGRESS_EVERY == 0 and not progress.disable:
            progress.set_postfix(loss=f"{running_loss.item() / seen:.3f}")
    return running_loss.item() / seen


def classification_loss(outputs, targets: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """Cross-entropy on raw logits; InceptionV3 in training mode adds its auxiliary head at 0.4 weight."""
    if isinstance(outputs, torchvision.models.InceptionOutputs):
        loss = criterion(outputs.logits, targets)
        if outputs.aux_logits is not None:
            loss = loss + 0.4 * criterion(outputs.aux_logits, targets)
        return loss
    return criterion(outputs, targets)


PROGRESS_EVERY = 20  # batches between progress-bar loss updates (each one waits for the GPU)


class TrainingError(ValueError):
    """Training cannot start; the message says what to change."""


def check_every_class_present(split: SplitArrays, classes: list[str]) -> None:
    counts = np.bincount(split.labels, minlength=len(classes))
    empty = [name for name, count in zip(classes, counts) if count == 0]
    if empty:
        raise TrainingError(f"the training split has no images of {empty}; add data or change index.split "
                            f"(a test_only dataset is an external test set: list it in cross_tests, not datasets)")


def input_normalization(arch: str, weights: str, train_split: SplitArrays) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pretrained weights expect the statistics they were trained with; from-scratch models use this data's."""
    if weights == "none":
        return intensity_stats(train_split.images)
    if weights != "imagenet" and Path(weights).suffix != ".safetensors":
        # One of our checkpoints as a starting point was trained on its own statistics (build_model read it already).
        checkpoint = load_tensors(Path(weights))
        if isinstance(checkpoint, dict) and "meta" in checkpoint:
            return tuple(checkpoint["meta"]["mean"]), tuple(checkpoint["meta"]["std"])
    return pretrained_normalization(arch)


def class_weights(split: SplitArrays, num_classes: int, train_params: TrainParams) -> torch.Tensor:
    """Inverse-frequency weights for the class-weighted loss (mean 1 over training images, sklearn's "balanced"); all ones otherwise."""
    if train_params.class_balance != "loss":
        return torch.ones(num_classes)
    counts = np.bincount(split.labels, minlength=num_classes).astype(np.float64)
    return torch.tensor(counts.sum() / (num_classes * counts.clip(min=1)), dtype=torch.float32)
