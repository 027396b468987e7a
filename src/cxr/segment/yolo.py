"""Ultralytics YOLO, offline and contained: nothing downloaded, installed, synced or written outside a
folder the stage names.

Ultralytics reaches for the network in several places: hub and analytics events, uploads to its Platform
when an API key is set, the Arial font for plots, AMP-check weights on CUDA, pip auto-install of missing
packages, and `.pt` weights named but not present. It also writes a settings file into the user's config folder and, with dvclive importable,
starts its own DVC experiment. `ultralytics_offline` closes all of these before the package is imported.

It is also the one module that touches Ultralytics' internals (its NMS, mask cropping, matcher, AP, restricted
loader, the Segment head's outputs and inputs, its PIL patch): each below, with its contract tested on the
versions pyproject allows (tests/test_yolo_adapter.py), so an Ultralytics upgrade is checked in one place.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from cxr.io.process_state import environment_restored

# Integrations Ultralytics turns on by itself when their package is importable; we log with our own dvclive.
INTEGRATIONS = ("sync", "hub", "dvc", "mlflow", "clearml", "comet", "raytune", "tensorboard", "wandb")


def ultralytics_offline(config_dir: Path | None = None) -> ModuleType:
    """The ultralytics package with its settings, font and weights folders in `config_dir` (default: a
    temporary folder removed at exit), offline.

    Environment variables are read once, when ultralytics is first imported; in a process that imported it
    already (the test suite), the settings are switched off again all the same.
    """
    if config_dir is None:
        config_dir = Path(tempfile.mkdtemp(prefix="ultralytics-"))
        atexit.register(shutil.rmtree, config_dir, True)
    config_dir = Path(config_dir).resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    # Read at every is_online() call: answered False without a DNS probe, so no hub and no events.
    os.environ["YOLO_OFFLINE"] = "1"
    # With an API key, Ultralytics' Platform callback uploads metrics and weights whatever YOLO_OFFLINE says.
    os.environ.pop("ULTRALYTICS_API_KEY", None)
    if "ultralytics" not in sys.modules:
        # Read once, at import. Importing also sets OMP_NUM_THREADS=1 and log levels for the whole process and its
        # children (every torch process a caller starts later would get one thread): the caller's environment is
        # put back after the import.
        with environment_restored():
            os.environ.update(YOLO_CONFIG_DIR=str(config_dir), YOLO_AUTOINSTALL="false", YOLO_VERBOSE="false",
                              # Ultralytics' own checkpoint loads (a trainer's best.pt) restricted: weights-only, known layers.
                              ULTRALYTICS_SAFE_LOAD="1")
            import ultralytics
    import ultralytics
    from PIL import Image
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR, patches

    # Importing Ultralytics replaces PIL's Image.open process-wide with one that answers any unidentifiable file
    # by installing (or, with auto-install off, failing to import) pi-heif: our readers must see PIL's own
    # UnidentifiedImageError, which skips and reports the file. Films are never HEIF.
    Image.open = patches._image_open
    _place_fonts(USER_CONFIG_DIR)

    changes = {key: False for key in INTEGRATIONS if key in SETTINGS and SETTINGS[key] is not False}
    if SETTINGS.get("api_key"):
        changes["api_key"] = ""
    runs = config_dir / "runs"
    folders = {"datasets_dir": str(config_dir / "datasets"), "weights_dir": str(config_dir / "weights"), "runs_dir": str(runs)}
    changes.update({key: value for key, value in folders.items() if SETTINGS.get(key) != value})
    if changes:
        SETTINGS.update(changes)
    return ultralytics


def _place_fonts(config_dir: Path) -> None:
    # Ultralytics looks for its fonts in the config folder before downloading them; matplotlib's DejaVu Sans
    # stands in (labels on plots only).
    from matplotlib import font_manager

    dejavu = font_manager.findfont("DejaVu Sans", fallback_to_default=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (config_dir / name).exists():
            shutil.copyfile(dejavu, config_dir / name)


def head_outputs(net: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions (B, 4 + classes + 32, anchors), prototypes (B, 32, S/4, S/4)) of a segmentation network in
    eval mode."""
    outputs = net(batch)
    # Ultralytics 8.4 returns ((predictions, prototypes), extras) in eval mode; older 8.x (predictions, (.., prototypes)).
    first = outputs[0]
    if isinstance(first, (tuple, list)):
        return first[0], first[1]
    return first, outputs[1][-1]


def head_input_layer(net: nn.Module) -> int:
    """The index in net.model of the layer whose output (stride 8) feeds the Segment head's finest level."""
    return int(net.model[-1].f[0])


def kept_detections(predictions: torch.Tensor, confidence: float, num_classes: int, *, with_anchors: bool = False):
    """Per image, Ultralytics' NMS (IoU 0.7, at most 20): (K, 6 + 32) rows of x1, y1, x2, y2, confidence, class
    and mask coefficients, highest confidence first; `with_anchors`: also each image's kept anchor indices."""
    from ultralytics.utils.nms import non_max_suppression

    # No time limit: Ultralytics' NMS otherwise drops the rest of a batch on a busy CPU, silently.
    return non_max_suppression(predictions, confidence, 0.7, nc=num_classes, max_det=20, max_time_img=float("inf"),
                               return_idxs=with_anchors)


def crop_to_boxes(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(K, H, W) masks zeroed outside each one's (K, 4) x1, y1, x2, y2 box."""
    from ultralytics.utils.ops import crop_mask

    return crop_mask(masks, boxes)


def mask_overlaps(truth: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """(N, K) IoU of N flattened true masks with K flattened predicted ones."""
    from ultralytics.utils.metrics import mask_iou

    return mask_iou(truth, predicted)


def matches_at(thresholds: torch.Tensor, predicted_classes: torch.Tensor, true_classes: torch.Tensor,
               overlaps: torch.Tensor) -> np.ndarray:
    """(K, T) whether each prediction matches a true instance of its class at each IoU threshold, each true
    instance matched once: Ultralytics' (COCO's) matcher, without building a validator."""
    from ultralytics.models.yolo.detect.val import DetectionValidator

    validator = DetectionValidator.__new__(DetectionValidator)  # match_predictions reads only iouv
    validator.iouv = thresholds
    return np.asarray(validator.match_predictions(predicted_classes, true_classes, overlaps), dtype=bool)


def average_precision(true_positives: np.ndarray, confidences: np.ndarray, predicted_classes: np.ndarray,
                      true_classes: np.ndarray) -> np.ndarray:
    """(classes present, T) average precision per class and IoU threshold, by Ultralytics' ap_per_class."""
    from ultralytics.utils.metrics import ap_per_class

    return ap_per_class(true_positives, confidences, predicted_classes, true_classes)[5]


def restricted_loader():
    """Ultralytics' weights-only checkpoint loader (`torch_safe_load(path, safe_only=True)`), or None when this
    torch and Ultralytics cannot load restricted."""
    import inspect

    from ultralytics.nn.tasks import torch_safe_load

    if "safe_only" not in inspect.signature(torch_safe_load).parameters \
            or not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        return None
    return lambda path: torch_safe_load(str(path), safe_only=True)[0]
