"""Train one classifier on prepared split arrays, keeping the epoch with the best validation macro-F1."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from cxr.io.arrays import SplitArrays, intensity_stats
from cxr.io.files import atomic_dir
from cxr.metrics.classification import validation_scores
from cxr.models.checkpoints import save_checkpoint
from cxr.models.inference import mixed_precision, model_input, predict_probabilities, split_dataset
from cxr.models.params import ModelParams
from cxr.models.registry import build_model, pretrained_normalization, uses_aux_head
from cxr.training.augment import augment_batch
from cxr.training.params import TrainParams


def train_classifier(train_split: SplitArrays, val_split: SplitArrays, classes: list[str], model_params: ModelParams,
                     train_params: TrainParams, device: torch.device, checkpoint: Path, log_dir: Path,
                     meta: dict, desc: str = "training") -> dict:
    """Trains, then writes the best epoch's checkpoint and the per-epoch dvclive log; returns the checkpoint meta.

    The log is written to a temporary folder that replaces the old one only together with the new
    checkpoint, so a killed run leaves the previous log and checkpoint as they were, still matching.
    """
    from dvclive import Live

    seed_everything(train_params.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    check_every_class_present(train_split, classes)
    model = build_model(model_params.arch, len(classes), model_params.image_size, model_params.weights).to(device)
    mean, std = input_normalization(model_params.arch, model_params.weights, train_split)

    train_loader = training_loader(train_split, train_params, len(classes))
    val_loader = DataLoader(split_dataset(val_split), batch_size=train_params.batch_size, num_workers=train_params.num_workers)
    criterion = nn.CrossEntropyLoss(weight=class_weights(train_split, len(classes), train_params).to(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_params.lr, weight_decay=train_params.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train_params.epochs * len(train_loader))
    augment_rng = torch.Generator().manual_seed(train_params.seed)

    def to_input(images: torch.Tensor) -> torch.Tensor:
        return model_input(images, model_params.image_size, mean, std,
                           lambda pixels: augment_batch(pixels, train_params.augment, augment_rng))

    precision = mixed_precision(device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)

    best = {"macro_f1": -1.0, "loss": float("inf"), "epoch": -1, "state": None}
    with atomic_dir(log_dir) as log_tmp:
        with Live(str(log_tmp), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            for epoch in range(train_params.epochs):
                train_loss = train_one_epoch(model, train_loader, to_input, criterion, optimizer, scheduler, scaler,
                                             precision, device, f"{desc} epoch {epoch + 1}/{train_params.epochs}")
                probabilities = predict_probabilities(model, val_loader, model_params.image_size, mean, std, device)
                scores = validation_scores(val_split.labels, probabilities, len(classes))
                live.log_metric("train/loss", train_loss)
                live.log_metric("val/loss", scores["loss"])
                live.log_metric("val/accuracy", scores["accuracy"])
                live.log_metric("val/macro_f1", scores["macro_f1"])
                live.log_metric("lr", scheduler.get_last_lr()[0])
                live.next_step()
                print(f"{desc} epoch {epoch + 1}: train loss {train_loss:.4f}, "
                      f"val loss {scores['loss']:.4f}, val macro-F1 {scores['macro_f1']:.4f}", flush=True)
                if scores["macro_f1"] > best["macro_f1"] or (scores["macro_f1"] == best["macro_f1"]
                                                             and scores["loss"] < best["loss"]):
                    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    best = {"macro_f1": scores["macro_f1"], "loss": scores["loss"], "epoch": epoch + 1, "state": state}
            live.summary["best"] = {"epoch": best["epoch"], "val_macro_f1": best["macro_f1"]}

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
        }
        save_checkpoint(checkpoint, model, meta)
    return meta


def train_one_epoch(model: nn.Module, loader: DataLoader, to_input: Callable[[torch.Tensor], torch.Tensor],
                    criterion: nn.Module, optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                    precision: torch.dtype | None, device: torch.device, desc: str = "training") -> float:
    """One pass over the training data; returns the mean training loss."""
    model.train()
    running_loss, seen = 0.0, 0
    progress = tqdm(loader, desc=desc, leave=False, disable=None)
    for images, labels in progress:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        inputs = to_input(images)
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            loss = classification_loss(model(inputs), labels, criterion)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        running_loss += loss.item() * len(labels)
        seen += len(labels)
        progress.set_postfix(loss=f"{running_loss / seen:.3f}")
    return running_loss / seen


def classification_loss(outputs, targets: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """Cross-entropy on raw logits; InceptionV3 in training mode adds its auxiliary head at 0.4 weight."""
    if isinstance(outputs, torchvision.models.InceptionOutputs):
        loss = criterion(outputs.logits, targets)
        if outputs.aux_logits is not None:
            loss = loss + 0.4 * criterion(outputs.aux_logits, targets)
        return loss
    return criterion(outputs, targets)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
        checkpoint = torch.load(Path(weights), map_location="cpu", weights_only=True)
        if isinstance(checkpoint, dict) and "meta" in checkpoint:
            return tuple(checkpoint["meta"]["mean"]), tuple(checkpoint["meta"]["std"])
    return pretrained_normalization(arch)


def training_loader(split: SplitArrays, train_params: TrainParams, num_classes: int) -> DataLoader:
    generator = torch.Generator().manual_seed(train_params.seed)
    sampler = None
    if train_params.class_balance == "sampler":
        per_class = 1.0 / np.bincount(split.labels, minlength=num_classes).clip(min=1)
        sampler = WeightedRandomSampler(per_class[split.labels].tolist(), num_samples=len(split), generator=generator)
    return DataLoader(
        split_dataset(split),
        batch_size=train_params.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=train_params.num_workers,
        # BatchNorm cannot train on a last batch of one image.
        drop_last=len(split) % train_params.batch_size == 1,
        pin_memory=torch.cuda.is_available(),
    )


def class_weights(split: SplitArrays, num_classes: int, train_params: TrainParams) -> torch.Tensor:
    """Inverse-frequency weights for the class-weighted loss (mean 1 over training images, sklearn's "balanced"); all ones otherwise."""
    if train_params.class_balance != "loss":
        return torch.ones(num_classes)
    counts = np.bincount(split.labels, minlength=num_classes).astype(np.float64)
    return torch.tensor(counts.sum() / (num_classes * counts.clip(min=1)), dtype=torch.float32)
