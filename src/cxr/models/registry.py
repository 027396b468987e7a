"""One registry over torchvision and timm classifiers: construction, pretrained weights and input normalization.

`arch` names a torchvision classifier (`resnet18`, `densenet161`, `inception_v3`, ...) or a timm one
as `timm/<name>` (`timm/efficientnet_b0`, `timm/convnext_atto`). Either gets a `num_classes` head and
the same three ways to its weights: none, imagenet (the library's own download) or a local file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from cxr.io.weights import WeightsFileError, load_tensors

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The study's four architectures; any other torchvision or timm classifier works too.
STUDY_ARCHS = ("resnet18", "resnet34", "densenet161", "inception_v3")
TIMM_PREFIX = "timm/"

_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


@dataclass(frozen=True)
class ArchSpec:
    """What the code must know of an architecture beyond its constructor (timm's pretrained_cfg idea): the
    smallest input it runs on, the normalization its ImageNet weights were trained with, and its auxiliary
    classifier, if any (its head's key prefix and the smallest input its pooled grid exists at)."""

    min_input_size: int = 32  # the usual 32x downsampling
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    aux_head: str | None = None  # state-dict prefix of the auxiliary classifier
    aux_min_input_size: int | None = None


ARCH_SPECS = {
    # The stem and grid reductions need 75 px; torchvision's weights were trained on inputs scaled to [-1, 1];
    # the auxiliary classifier pools a 17x17 grid that only exists from 299 px input up.
    "inception_v3": ArchSpec(min_input_size=75, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), aux_head="AuxLogits",
                             aux_min_input_size=299),
    # GoogLeNet's weights too: torchvision rescales ImageNet-normalized inputs inside it (transform_input).
    "googlenet": ArchSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}
DEFAULT_SPEC = ArchSpec()


def arch_spec(arch: str) -> ArchSpec:
    """The spec of a torchvision architecture (the table's entry, else the usual one), or a timm model's from its
    pretrained config."""
    if is_timm(arch):
        import timm

        config = timm.get_pretrained_cfg(arch.removeprefix(TIMM_PREFIX))
        if config is None:
            return DEFAULT_SPEC
        return ArchSpec(mean=tuple(float(v) for v in config.mean), std=tuple(float(v) for v in config.std))
    return ARCH_SPECS.get(arch, DEFAULT_SPEC)


class WeightsError(RuntimeError):
    """Pretrained weights could not be obtained or do not fit the architecture."""


def is_timm(arch: str) -> bool:
    return arch.startswith(TIMM_PREFIX)


def check_arch(arch: str) -> None:
    """ValueError naming the choices unless `arch` is a known torchvision or timm classifier."""
    if is_timm(arch):
        import timm

        if not timm.is_model(arch.removeprefix(TIMM_PREFIX)):
            raise ValueError(f"unknown timm model {arch.removeprefix(TIMM_PREFIX)!r}; `timm.list_models()` lists them")
    elif arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(STUDY_ARCHS)}, "
                         f"another torchvision classifier, or timm/<name>")


def min_input_size(arch: str) -> int:
    return arch_spec(arch).min_input_size


def uses_aux_head(arch: str, image_size: int) -> bool:
    spec = arch_spec(arch)
    return spec.aux_head is not None and image_size >= spec.aux_min_input_size


def build_model(arch: str, num_classes: int, image_size: int, weights: str = "none") -> nn.Module:
    """A classifier with a `num_classes` head.

    weights: "none" (random init, works offline), "imagenet" (torchvision's or timm's download, cached
    under $TORCH_HOME or the Hugging Face cache) or the path of a weights file (ImageNet-shaped state
    dict, .safetensors, or one of our checkpoints).
    """
    if is_timm(arch):
        return _timm_model(arch.removeprefix(TIMM_PREFIX), num_classes, weights)
    spec, aux = arch_spec(arch), uses_aux_head(arch, image_size)
    if weights == "imagenet":
        model = _torchvision_imagenet_model(arch)
        _replace_torchvision_head(model, arch, num_classes)
        if hasattr(model, "transform_input"):
            # torchvision would re-normalise inside the model (InceptionV3, GoogLeNet); model_input already feeds
            # what the weights expect (their spec's normalization), and a rebuilt checkpoint has no such flag.
            model.transform_input = False
    else:
        # torchvision's InceptionV3 warns unless told how to initialise, and builds its aux head unless told not to.
        extra = {"aux_logits": aux, "init_weights": True} if spec.aux_head else {}
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **extra)
        if weights != "none":
            load_weights_file(model, Path(weights), _head_prefixes(spec))
    if spec.aux_head and not aux:
        # torchvision forces the aux head on with ImageNet weights; below its smallest input it cannot run.
        model.aux_logits = False
        setattr(model, spec.aux_head, None)
    return model


def pretrained_normalization(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean and std that the library's ImageNet weights of `arch` were trained with."""
    spec = arch_spec(arch)
    return spec.mean, spec.std


def _offline_error(arch: str, url: str, cache_hint: str, err: Exception) -> WeightsError:
    return WeightsError(
        f"could not download the ImageNet weights of {arch} ({type(err).__name__}: {err}). "
        f"Offline? Fetch {url} on a machine with internet and set `weights:` of this model in params.yaml "
        f"to the file's path, or {cache_hint}."
    )


def _torchvision_imagenet_model(arch: str) -> nn.Module:
    weights_enum = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        return torchvision.models.get_model(arch, weights=weights_enum)
    except (ConnectionError, TimeoutError, OSError) as err:  # urllib's URLError is an OSError
        raise _offline_error(arch, weights_enum.url, f"put it in {Path(torch.hub.get_dir()) / 'checkpoints'}", err) from None


def _timm_model(name: str, num_classes: int, weights: str) -> nn.Module:
    import timm

    if weights != "imagenet":
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        if weights != "none":
            load_weights_file(model, Path(weights), (f"{model.pretrained_cfg.get('classifier', 'head')}.",))
        return model
    try:
        # timm drops the ImageNet head itself when num_classes differs.
        return timm.create_model(name, pretrained=True, num_classes=num_classes)
    except Exception as err:  # huggingface_hub and torch.hub raise many types when offline
        raise _timm_offline_error(name, err) from None


def _timm_offline_error(name: str, err: Exception) -> WeightsError:
    import timm

    config = timm.get_pretrained_cfg(name)
    hub = config.hf_hub_id.split("@")[0] if config is not None and config.hf_hub_id else None
    if hub:
        # A single file dropped into the Hugging Face cache is not found: the cache is a folder per repository.
        from huggingface_hub.constants import HF_HUB_CACHE

        url = f"https://huggingface.co/{hub}/resolve/main/{config.hf_hub_filename or 'model.safetensors'}"
        hint = f"copy the folder models--{hub.replace('/', '--')} of a Hugging Face cache that has it into {HF_HUB_CACHE}"
    elif config is not None and config.url:
        url, hint = config.url, f"put it in {Path(torch.hub.get_dir()) / 'checkpoints'}"
    else:
        return WeightsError(f"timm has no ImageNet weights for {name} ({type(err).__name__}: {err}); "
                            f"set `weights:` of this model in params.yaml to none or a weights file")
    return _offline_error(f"timm/{name}", url, hint, err)


def _replace_torchvision_head(model: nn.Module, arch: str, num_classes: int) -> None:
    if hasattr(model, "fc") and isinstance(model.fc, nn.Linear):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif hasattr(model, "classifier") and isinstance(model.classifier, nn.Linear):
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    else:
        raise WeightsError(f"no head replacement known for {arch}: use weights none or a file of this architecture")
    aux_head = arch_spec(arch).aux_head
    if aux_head and getattr(model, aux_head, None) is not None:
        auxiliary = getattr(model, aux_head)
        auxiliary.fc = nn.Linear(auxiliary.fc.in_features, num_classes)


# Key prefixes of torchvision heads, which a weights file with another number of classes may not fit.
TORCHVISION_HEADS = ("fc.", "classifier.")


def _head_prefixes(spec: ArchSpec) -> tuple[str, ...]:
    """The heads a weights file may not fit, and the auxiliary classifier it may not have at all (a model
    trained below the aux head's smallest input has none)."""
    return TORCHVISION_HEADS + ((f"{spec.aux_head}.",) if spec.aux_head else ())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: a torch state dict, one of our checkpoints, or .safetensors."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found: set `weights:` to none, imagenet or an existing weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = load_tensors(path)
    except WeightsFileError as err:
        raise WeightsError(str(err)) from None
    except Exception as err:  # safetensors raises many types for foreign or corrupt files
        raise WeightsError(f"{path} is not a loadable weights file ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict of tensors")
    return state


def load_weights_file(model: nn.Module, path: Path, head_prefixes: tuple[str, ...]) -> None:
    """Loads every matching tensor; only the classification heads (key prefixes) may differ or be missing
    (e.g. 1000 ImageNet classes)."""
    state = read_state_dict(path)
    # torchvision's DenseNet files use old key names ("norm.1") that its own loader renames ("norm1").
    state = {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    # Older files have no BatchNorm step counters; those only matter for momentum-free BatchNorm.
    missing = [k for k in own if k not in fitting and not k.startswith(head_prefixes)
               and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"{path} does not fit this architecture: {len(missing)} tensors missing or mis-shaped, e.g. {missing[:3]}")
    model.load_state_dict(fitting, strict=False)
