"""Train one classifier on one prepared dataset, keeping the epoch with the best validation macro-F1.

    python -m stages.train --model resnet18 --dataset full
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from dvclive import Live
from sklearn.metrics import f1_score, log_loss
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from stages.datasets import SplitArrays, intensity_stats, model_input, tensors
from stages.models import (
    WeightsError, build_model, classification_loss, mixed_precision, predict_probabilities, pretrained_normalization,
    resolve_device, save_checkpoint, uses_aux_head,
)
from stages.params import ModelParams, Params, TrainParams, stage_arguments
from stages.paths import model_file, split_file, train_log_dir, view_file


def main(argv: list[str] | None = None) -> None:
    params, args = stage_arguments(__doc__, argv, model=True, dataset=True)
    model_params, train_params = params.model[args.model], params.train
    seed_everything(params.seed)
    device = resolve_device(params.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)

    train_split = SplitArrays.load(split_file(args.dataset, "train"))
    val_split = SplitArrays.load(split_file(args.dataset, "val"))
    check_every_class_present(train_split, params.classes, args.dataset)
    try:
        model = build_model(model_params.arch, len(params.classes), model_params.image_size, model_params.weights).to(device)
    except WeightsError as err:
        raise SystemExit(f"error: model.{args.model}.weights: {err}") from None
    mean, std = input_normalization(model_params.arch, model_params.weights, train_split)

    train_loader = training_loader(train_split, train_params, len(params.classes), params.seed)
    val_loader = DataLoader(tensors(val_split), batch_size=train_params.batch_size, num_workers=train_params.num_workers)
    criterion = nn.CrossEntropyLoss(weight=class_weights(train_split, len(params.classes), train_params).to(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=model_params.lr, weight_decay=train_params.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train_params.epochs * len(train_loader))
    augment_rng = torch.Generator().manual_seed(params.seed)

    def to_input(images: torch.Tensor) -> torch.Tensor:
        return model_input(images, model_params.image_size, mean, std, train_params.augment, augment_rng)

    precision = mixed_precision(device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)

    best = {"macro_f1": -1.0, "loss": float("inf"), "epoch": -1, "state": None}
    with Live(str(train_log_dir(args.dataset, args.model)), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for epoch in range(train_params.epochs):
            desc = f"{args.model}/{args.dataset} epoch {epoch + 1}/{train_params.epochs}"
            train_loss = train_one_epoch(model, train_loader, to_input, criterion, optimizer, scheduler, scaler, precision, device, desc)

            probabilities = predict_probabilities(model, val_loader, model_params.image_size, mean, std, device)
            classes = list(range(len(params.classes)))
            val_loss = log_loss(val_split.labels, probabilities, labels=classes)
            val_f1 = f1_score(val_split.labels, probabilities.argmax(1), labels=classes, average="macro", zero_division=0)
            live.log_metric("train/loss", train_loss)
            live.log_metric("val/loss", val_loss)
            live.log_metric("val/accuracy", float((probabilities.argmax(1) == val_split.labels).mean()))
            live.log_metric("val/macro_f1", val_f1)
            live.log_metric("lr", scheduler.get_last_lr()[0])
            live.next_step()
            print(f"{args.model}/{args.dataset} epoch {epoch + 1}: train loss {train_loss:.4f}, "
                  f"val loss {val_loss:.4f}, val macro-F1 {val_f1:.4f}", flush=True)
            if val_f1 > best["macro_f1"] or (val_f1 == best["macro_f1"] and val_loss < best["loss"]):
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                best = {"macro_f1": val_f1, "loss": val_loss, "epoch": epoch + 1, "state": state}
        live.summary["best"] = {"epoch": best["epoch"], "val_macro_f1": best["macro_f1"]}

    model.load_state_dict(best["state"])
    save_checkpoint(model_file(args.dataset, args.model), model, checkpoint_meta(params, args.model, args.dataset, mean, std, best))
    print(f"saved {model_file(args.dataset, args.model)} (epoch {best['epoch']}, val macro-F1 {best['macro_f1']:.4f})")


def train_one_epoch(model: nn.Module, loader: DataLoader, to_input, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, scaler: torch.amp.GradScaler, precision: torch.dtype | None, device: torch.device,
                    desc: str = "training") -> float:
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_every_class_present(split: SplitArrays, classes: list[str], dataset: str) -> None:
    counts = np.bincount(split.labels, minlength=len(classes))
    empty = [name for name, count in zip(classes, counts) if count == 0]
    if empty:
        raise SystemExit(f"error: the {dataset} training split has no images of {empty}; add data or change the split")


def input_normalization(arch: str, weights: str, train_split: SplitArrays) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pretrained weights expect the statistics they were trained with; from-scratch models use this data's."""
    if weights == "none":
        return intensity_stats(train_split.images)
    if weights != "imagenet":
        checkpoint = torch.load(Path(weights), map_location="cpu", weights_only=True)
        if isinstance(checkpoint, dict) and "meta" in checkpoint:
            return tuple(checkpoint["meta"]["mean"]), tuple(checkpoint["meta"]["std"])
    return pretrained_normalization(arch)


def training_loader(split: SplitArrays, train_params: TrainParams, num_classes: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if train_params.class_balance == "sampler":
        per_class = 1.0 / np.bincount(split.labels, minlength=num_classes).clip(min=1)
        sampler = WeightedRandomSampler(per_class[split.labels].tolist(), num_samples=len(split), generator=generator)
    return DataLoader(
        tensors(split),
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
    """Inverse-frequency weights (mean 1) for the class-weighted loss; all ones otherwise."""
    if train_params.class_balance != "loss":
        return torch.ones(num_classes)
    counts = np.bincount(split.labels, minlength=num_classes).astype(np.float64)
    return torch.tensor(counts.sum() / (num_classes * counts.clip(min=1)), dtype=torch.float32)


def checkpoint_meta(params: Params, model: str, dataset: str, mean, std, best: dict) -> dict:
    model_params: ModelParams = params.model[model]
    return {
        "model": model,
        "arch": model_params.arch,
        "dataset": dataset,
        # How raw X-rays became this model's inputs, so prediction can redo it with stages.datasets.make_view.
        "preprocessing": json.loads(view_file(dataset).read_text()),
        "classes": list(params.classes),
        "image_size": model_params.image_size,
        "aux_logits": uses_aux_head(model_params.arch, model_params.image_size),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "weights": model_params.weights,
        "epoch": best["epoch"],
        "val_macro_f1": float(best["macro_f1"]),
        "seed": params.seed,
    }


if __name__ == "__main__":
    main()
