"""Classifier construction, weights loading, checkpoints and batched inference."""

from __future__ import annotations

import re
import urllib.error
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from stages.datasets import model_input
from stages.files import atomic_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's InceptionV3 weights were trained on inputs scaled to [-1, 1].
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)

# InceptionV3's auxiliary classifier pools a 17x17 grid that only exists from 299 px input up.
INCEPTION_AUX_MIN_SIZE = 299

CHECKPOINT_FORMAT = 1

_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


class WeightsError(RuntimeError):
    """Pretrained weights could not be obtained or do not fit the architecture."""


def uses_aux_head(arch: str, image_size: int) -> bool:
    return arch == "inception_v3" and image_size >= INCEPTION_AUX_MIN_SIZE


def build_model(arch: str, num_classes: int, image_size: int, weights: str = "none") -> nn.Module:
    """A torchvision classifier with a `num_classes` head.

    weights: "none" (random init, works offline), "imagenet" (torchvision's download, cached under
    $TORCH_HOME) or the path of a state-dict file (ImageNet-shaped or one of our checkpoints).
    """
    aux = uses_aux_head(arch, image_size)
    if weights == "imagenet":
        model = _imagenet_model(arch)
        _replace_head(model, arch, num_classes)
        if arch == "inception_v3":
            # torchvision would re-normalise inside the model; model_input already feeds what the
            # weights expect (pretrained_normalization), and a rebuilt checkpoint has no such flag.
            model.transform_input = False
    else:
        extra = {"aux_logits": aux, "init_weights": True} if arch == "inception_v3" else {}
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **extra)
        if weights != "none":
            _load_state_dict_file(model, Path(weights))
    if arch == "inception_v3" and not aux:
        # torchvision forces the aux head on with ImageNet weights; below 299 px it cannot run.
        model.aux_logits, model.AuxLogits = False, None
    return model


def pretrained_normalization(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean and std that torchvision's ImageNet weights of `arch` were trained with."""
    return (INCEPTION_MEAN, INCEPTION_STD) if arch == "inception_v3" else (IMAGENET_MEAN, IMAGENET_STD)


def _imagenet_model(arch: str) -> nn.Module:
    weights_enum = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        return torchvision.models.get_model(arch, weights=weights_enum)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
        raise WeightsError(
            f"could not download the ImageNet weights of {arch} ({type(err).__name__}: {err}). "
            f"Offline? Fetch {weights_enum.url} on a machine with internet and either put it in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} or set `weights:` of this model in params.yaml to the file's path."
        ) from None


def _replace_head(model: nn.Module, arch: str, num_classes: int) -> None:
    if arch.startswith("resnet") or arch == "inception_v3":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        if arch == "inception_v3" and model.AuxLogits is not None:
            model.AuxLogits.fc = nn.Linear(model.AuxLogits.fc.in_features, num_classes)
    elif arch.startswith("densenet"):
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    else:
        raise ValueError(f"no head replacement known for {arch}")


def _load_state_dict_file(model: nn.Module, path: Path) -> None:
    """Loads every matching tensor; only the classification heads may differ (e.g. 1000 ImageNet classes)."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found: set `weights:` to none, imagenet or an existing state-dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or corrupt files
        raise WeightsError(f"{path} is not a loadable state-dict file ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    # torchvision's DenseNet files use old key names ("norm.1") that its own loader renames ("norm1").
    state = {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    head_keys = {k for k in own if k.startswith(("fc.", "classifier.", "AuxLogits.fc."))}
    # Older files have no BatchNorm step counters; those only matter for momentum-free BatchNorm.
    missing = [k for k in own if k not in fitting and k not in head_keys and not k.startswith("AuxLogits.")
               and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"{path} does not fit this architecture: {len(missing)} tensors missing or mis-shaped, e.g. {missing[:3]}")
    model.load_state_dict(fitting, strict=False)


def classification_loss(outputs, targets: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """Cross-entropy on raw logits; InceptionV3 in training mode adds its auxiliary head at 0.4 weight."""
    if isinstance(outputs, torchvision.models.InceptionOutputs):
        loss = criterion(outputs.logits, targets)
        if outputs.aux_logits is not None:
            loss = loss + 0.4 * criterion(outputs.aux_logits, targets)
        return loss
    return criterion(outputs, targets)


def save_checkpoint(path: Path, model: nn.Module, meta: dict) -> None:
    """State dict plus everything needed to rebuild and feed the model; loads with weights_only=True."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "meta": meta, "state_dict": state}, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train the model first (`dvc repro`)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint of this pipeline (format {checkpoint.get('format')!r})")
    meta = checkpoint["meta"]
    model = build_model(meta["arch"], len(meta["classes"]), meta["image_size"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), meta


@torch.no_grad()
def predict_probabilities(model: nn.Module, loader: DataLoader, image_size: int, mean: Sequence[float],
                          std: Sequence[float], device: torch.device) -> np.ndarray:
    """Softmax class probabilities (N, C), applied once here and nowhere inside the model."""
    model.eval()
    batches = []
    for images, _ in loader:
        inputs = model_input(images.to(device), image_size, mean, std)
        precision = mixed_precision(device)
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            logits = model(inputs)
        batches.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(batches) if batches else np.zeros((0, 0))


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training and inference alike: bf16 where the GPU has it, else fp16; none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device is {requested!r} but no CUDA device is available; use auto or cpu")
    return torch.device(requested)
