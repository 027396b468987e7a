"""Ultralytics YOLO, offline and contained: nothing downloaded, installed, synced or written outside a
folder the stage names.

Ultralytics reaches for the network in several places: hub and analytics events, uploads to its Platform
when an API key is set, the Arial font for plots, AMP-check weights on CUDA, pip auto-install of missing
packages, and `.pt` weights named but not present. It also writes a settings file into the user's config folder and, with dvclive importable,
starts its own DVC experiment. `ultralytics_offline` closes all of these before the package is imported.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

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
