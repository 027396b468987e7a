"""`cxr check`: params.yaml as a whole pipeline. Every section is valid, and every name one section gives another
exists and is used, so `dvc repro` runs exactly what the params need and never stops at a missing stage.

Each stage validates only the keys it reads (cxr.params); dvc.yaml fans the stages out over entries and lists
of params.yaml. What no single stage can see is checked here: a dataset naming a source that is gone, a cross
test of a dataset nobody trains on, a generator whose files no source reads. `cxr preset` runs the same check
before it writes params.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxr.data.params import DatasetParams, IndexParams, PrepareParams, SourceParams
from cxr.explain.params import ExplainParams
from cxr.metrics.params import CrossTests, EvaluateParams
from cxr.models.params import ModelParams
from cxr.params import Classes, Device, Names, ParamsError, Workers, load_params, read_params_file
from cxr.report.params import ProbeParams, ShortcutParams
from cxr.segment.params import Confidence, GallerySize, LabelMode, SegmentTrainParams
from cxr.synthetic.params import GenerateParams, RadiographyParams
from cxr.training.params import TrainParams

# Sections keyed by names the user chooses (a new entry is a new name, not a typo).
NAMED_SECTIONS = ("generate", "generate_radiography", "source", "dataset", "segmented_dataset", "model")


def section_schemas(raw: dict) -> dict[str, Any]:
    """The schema of every key of params.yaml, as the stages together read them, in an order in which each
    key's validation context (the keys before it) is what its stage gives it."""
    schemas: dict[str, Any] = {"classes": Classes, "datasets": Names, "models": Names, "device": Device,
                               "workers": Workers, "index": IndexParams, "prepare": PrepareParams,
                               "train": TrainParams, "evaluate": EvaluateParams, "cross_tests": CrossTests,
                               "explain": ExplainParams, "probe": ProbeParams, "shortcut": ShortcutParams | None,
                               "segment.label_mode": LabelMode, "segment.train_on": Names,
                               "segment.evaluate_on": Names, "segment.train": SegmentTrainParams,
                               "segment.confidence": Confidence, "segment.gallery": GallerySize}
    for section, schema in (("generate", GenerateParams), ("generate_radiography", RadiographyParams),
                            ("source", SourceParams), ("dataset", DatasetParams), ("segmented_dataset", DatasetParams),
                            ("model", ModelParams)):
        entries = raw.get(section)
        if isinstance(entries, dict):
            schemas |= {f"{section}.{name}": schema for name in entries}
        else:
            schemas[section] = dict[str, schema]  # reports a missing or malformed section in the same words
    return schemas


def pipeline_problems(raw: dict, root: Path = Path(".")) -> list[str]:
    """One line per name that points nowhere or is used by nothing (`raw` already passed section_schemas).
    Paths of raw sources are looked up under `root`, the folder of params.yaml."""
    problems: list[str] = []

    def problem(key: str, message: str) -> None:
        problems.append(f"  - {key}: {message}")

    datasets, segmented, sources = raw["dataset"], raw.get("segmented_dataset") or {}, raw["source"]
    probe, shortcut = raw["probe"], raw.get("shortcut")
    views = {name: entry["view"] for name, entry in {**datasets, **segmented}.items()}

    for name in segmented.keys() & datasets.keys():
        problem(f"segmented_dataset.{name}", "is also a `dataset` entry: each name is one prepared dataset")
    for section, entries in (("dataset", datasets), ("segmented_dataset", segmented)):
        for name, entry in entries.items():
            if entry["source"] not in sources:
                problem(f"{section}.{name}.source", f"no source {entry['source']!r} (sources: {_names(sources)})")
    for key, names in (("datasets", raw["datasets"]), ("probe.datasets", probe["datasets"])):
        for name in names:
            if name not in datasets:
                problem(key, f"{name!r} has no `dataset` entry (datasets: {_names(datasets)})")
    for key, names in (("models", raw["models"]), ("probe.models", probe["models"])):
        for name in names:
            if name not in raw["model"]:
                problem(key, f"{name!r} has no `model` entry (models: {_names(raw['model'])})")
    if probe["models"]:
        for name in set(probe["datasets"]) & set(raw["datasets"]):
            problem("probe.datasets", f"{name!r} is also in `datasets`, whose grid trains every model on it already")
    for key, tests in (("cross_tests", raw["cross_tests"]), ("probe.cross_tests", probe["cross_tests"])):
        for number, test in enumerate(tests):
            trained_on, tested_on = test["trained_on"], test["tested_on"]
            if tested_on not in views:
                problem(f"{key}.{number}.tested_on", f"no dataset {tested_on!r} (`dataset` or `segmented_dataset`)")
            elif trained_on in views and views[tested_on] != views[trained_on]:
                problem(f"{key}.{number}", f"{trained_on!r} is a {views[trained_on]} view, {tested_on!r} a "
                                           f"{views[tested_on]} view: a model is tested on the view it learnt")
    for key in ("segment.train_on", "segment.evaluate_on"):
        for name in raw["segment"][key.split(".")[1]]:
            if name not in datasets:
                problem(key, f"{name!r} has no `dataset` entry (the segmenter learns and is scored on true masks)")
            elif views[name] == "outside":
                problem(key, f"{name!r} is an outside view: its lungs are blacked out, there is nothing to segment")
            elif key == "segment.train_on" and datasets[name].get("test_only"):
                problem(key, f"{name!r} is test-only: it has no train split to learn from")
    if shortcut is not None:
        if shortcut["dataset"] not in probe["datasets"]:
            problem("shortcut.dataset", f"{shortcut['dataset']!r} is not in probe.datasets: no model trains on it")
        if shortcut["clean"] not in raw["datasets"]:
            problem("shortcut.clean", f"{shortcut['clean']!r} is not in `datasets`: no model trains on it")
        if {"trained_on": shortcut["dataset"], "tested_on": shortcut["marker_free"]} not in probe["cross_tests"]:
            problem("shortcut.marker_free", f"needs the probe cross test {{trained_on: {shortcut['dataset']}, "
                                            f"tested_on: {shortcut['marker_free']}}} in probe.cross_tests")
        for name in set(probe["models"]) - set(raw["models"]):
            problem("probe.models", f"{name!r} is not in `models`: the shortcut table compares it with its clean run")

    used_datasets = ({*raw["datasets"], *raw["segment"]["train_on"], *raw["segment"]["evaluate_on"]}
                     | ({*probe["datasets"]} if probe["models"] else set())
                     | {test["tested_on"] for test in raw["cross_tests"]}
                     | ({test["tested_on"] for test in probe["cross_tests"]} if probe["models"] else set()))
    for section, entries in (("dataset", datasets), ("segmented_dataset", segmented)):
        for name in entries.keys() - used_datasets:
            problem(f"{section}.{name}", "is used by no training, test or segmenter: remove it, or name it in "
                                         "datasets, probe.datasets, cross_tests or segment")
    used_sources = {entry["source"] for name, entry in {**datasets, **segmented}.items() if name in used_datasets}
    for name in sources.keys() - used_sources:
        problem(f"source.{name}", "is read by no dataset in use: remove it, or add a dataset of it")

    generated = generator_outputs(raw)
    for name in sorted(used_sources & sources.keys()):
        path = sources[name]["path"]
        if path not in generated and not (root / path).exists() and not (root / f"{path}.dvc").exists():
            problem(f"source.{name}.path", f"{path} does not exist: download it there and `dvc add {path}`, "
                                           f"or point the path at your copy")
    read = {sources[name]["path"] for name in used_sources & sources.keys()}
    for key, paths in generated_by(raw).items():
        if not set(paths) & read:
            problem(key, f"writes {', '.join(paths)}, which no source in use reads: remove the entry")
    return problems


def generated_by(raw: dict) -> dict[str, list[str]]:
    """Each generator's key and the paths it writes."""
    found = {f"generate.{name}": [entry["out_dir"], entry["shortcut_dir"]]
             for name, entry in (raw.get("generate") or {}).items()}
    found |= {f"generate_radiography.{name}": [entry["out_zip"]]
              for name, entry in (raw.get("generate_radiography") or {}).items()}
    return found


def generator_outputs(raw: dict) -> set[str]:
    return {path for paths in generated_by(raw).values() for path in paths}


def unused_generators(raw: dict) -> list[str]:
    """The generator keys whose files no source reads (what `cxr preset` drops)."""
    read = {entry["path"] for entry in (raw.get("source") or {}).values() if isinstance(entry, dict)}
    return [key for key, paths in generated_by(raw).items() if not set(paths) & read]


def check_params(path: Path) -> list[str]:
    """Every problem of the params file at `path`, one line each; [] when the pipeline is whole."""
    try:
        raw = read_params_file(path)
        load_params(section_schemas(raw), path)
    except ParamsError as err:
        return str(err).splitlines()[1:] or [str(err)]
    return pipeline_problems(raw, path.parent)


def _names(entries: dict) -> str:
    return ", ".join(entries) or "none"
