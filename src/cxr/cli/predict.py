"""`cxr predict`: a trained model on X-ray files, folders or zips; probabilities as a table or JSON.

A model is named as in the registry (`resnet18-full`, the `artifacts` of dvc.yaml), as `<dataset>/<model>`,
or by the path of a checkpoint. Unreadable files are reported one by one with the reason; the others are
still predicted, and the exit status is 1 when any file could not be. A film the tool's own checks call
implausible (a constant image, a lung mask that fails the anatomical checks) gets no class unless
--force-class: an abstention is an answer, not a failure, and leaves the exit status 0.

With --json, stdout holds the JSON alone (strict: no NaN), whatever the files: progress and warnings go to
stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from cxr.params import PARAMS_FILE, read_params_file
from cxr.paths import PipelineFileError, optional_stage_path, registry, stage_path, stage_path_fields

# Used outside a checkout, where there is no params.yaml to take them from: its defaults.
DEFAULTS = {"segment.confidence": 0.25, "explain.method": "gradcam", "explain.min_grid": 7}


def resolve_model(spec: str) -> Path:
    path = Path(spec)
    if path.is_file() or path.suffix == ".pt":
        return path
    known = registry()
    if spec in known:
        return Path(known[spec])
    dataset, sep, model = spec.partition("/")
    if sep and dataset and model:
        try:
            return stage_path("train", "--checkpoint", dataset=dataset, model=model)
        except PipelineFileError as err:
            raise SystemExit(f"error: {spec} names a model by where the pipeline trains it, but {err}; "
                             f"or give the path of its checkpoint (.pt)") from None
    segmenter = optional_stage_path("segment_train", "--checkpoint")
    names = ", ".join(name for name, checkpoint in known.items() if Path(checkpoint) != segmenter) or "none here"
    raise SystemExit(f"error: no model {spec!r}: give a registry name ({names}), <dataset>/<model> "
                     f"(e.g. full/resnet18) or the path of a checkpoint (.pt)")


def trained_on_by_place(checkpoint: Path) -> str | None:
    """The dataset whose classifiers the pipeline's train stage writes where `checkpoint` lies; None when it lies
    elsewhere (or outside a checkout). A checkpoint misplaced there would be run, and registered, as what it is not."""
    try:
        fields = stage_path_fields("train", "--checkpoint", checkpoint)
    except PipelineFileError:
        return None
    return None if fields is None else fields.get("dataset")


def repository_value(key: str):
    """A params.yaml value when run inside the repository, else its default."""
    try:
        node = read_params_file(PARAMS_FILE)
        for part in key.split("."):
            node = node[part]
        return node
    except Exception:  # noqa: BLE001 - outside a checkout (or with a broken params.yaml) the default does
        return DEFAULTS[key]


def run_predict(args) -> int:
    stdout = sys.stdout
    # Whatever the libraries print while films are read and classified is no part of the answer: stderr.
    with contextlib.redirect_stdout(sys.stderr):
        outcome = predict_inputs(args)
    if isinstance(outcome, int):
        return outcome
    checkpoint, predictor, inputs, predictions, failed = outcome
    if args.json:
        json.dump({"model": str(checkpoint), "arch": predictor.meta["arch"], "trained_on": predictor.meta["dataset"],
                   "view": predictor.view["view"], "classes": predictor.classes, "layouts": inputs.layouts,
                   "predictions": [vars(p) for p in predictions],
                   "failed": [{"file": name, "reason": reason} for name, reason in failed],
                   "ignored": inputs.ignored, "skipped_masks": inputs.skipped_masks,
                   "skipped_outside_layout": inputs.skipped_outside_layout}, stdout, indent=1, allow_nan=False)
        print(file=stdout)
    else:
        print(prediction_table(predictions, predictor.classes), file=stdout)
        print(summary_line(checkpoint, predictor.meta, inputs, predictions, failed), file=stdout)
    for name, reason in failed:
        print(f"error: {name}: {reason}", file=sys.stderr)
    return 1 if failed else 0


def predict_inputs(args):
    """(checkpoint, predictor, inputs, predictions, failed), or the exit status when the model cannot be used."""
    from tqdm import tqdm

    from cxr.params import DeviceError, resolve_device
    from cxr.predict.inputs import collect_inputs
    from cxr.predict.run import ExplainSettings, PredictError, Predictor, UnreadableImage

    checkpoint = resolve_model(args.model)
    explain = None
    if args.explain is not None:
        explain = ExplainSettings(str(repository_value("explain.method")), int(repository_value("explain.min_grid")))
    try:
        device = resolve_device(args.device)
    except DeviceError as err:
        print(f"error: --device: {err}", file=sys.stderr)
        return 2
    try:
        predictor = Predictor(checkpoint, device,
                              segmenter_file=args.segmenter or (None if args.no_segmenter else optional_stage_path("segment_train", "--checkpoint")),
                              confidence=float(repository_value("segment.confidence")), explain=explain,
                              segmenter_optional=args.segmenter is None, abstain=not args.force_class,
                              placed_for=trained_on_by_place(checkpoint))
    except PredictError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    inputs = collect_inputs(args.inputs)
    predictions, failed = [], list(inputs.missing)
    for item in tqdm(inputs.files, desc="predict", unit="image", file=sys.stderr,
                     disable=None if len(inputs.files) > 1 else True):
        try:
            predictions.append(predictor.predict(item.name, item.read(), args.explain))
        except (UnreadableImage, OSError) as err:
            failed.append((item.name, str(err)))
    return checkpoint, predictor, inputs, predictions, failed


def summary_line(checkpoint: Path, meta: dict, inputs, predictions: list, failed: list) -> str:
    abstained = sum(p.predicted is None for p in predictions)
    counts = [f"{len(predictions) - abstained} predicted", f"{len(failed)} failed", f"{abstained} abstained",
              f"{len(inputs.ignored)} ignored (not images)"]
    if inputs.layouts:
        layouts = ", ".join(f"{path} ({layout})" for path, layout in inputs.layouts.items())
        counts.append(f"{len(inputs.skipped_masks)} lung masks skipped")
        if inputs.skipped_outside_layout:
            counts.append(f"{len(inputs.skipped_outside_layout)} images outside the layout skipped")
        counts.append(f"films only of the dataset layout of {layouts}")
    return f"{checkpoint} ({meta['arch']}, trained on {meta['dataset']}): " + ", ".join(counts)


def prediction_table(predictions: list, classes: list[str]) -> str:
    header = ["file", "predicted", *(f"p({c})" for c in classes), "lungs", "note"]
    rows = []
    for p in predictions:
        lungs = "" if p.lungs is None else ("plausible" if p.lungs["plausible"] else "IMPLAUSIBLE: " + "; ".join(p.lungs["reasons"]))
        if p.explanation and p.explanation.get("cam_lung_energy") is not None:
            lungs += f" (CAM on lungs {p.explanation['cam_lung_energy']:.2f})"
        # An abstention shows no probabilities: they are the model's output on a film it cannot be trusted with.
        shown = [f"{p.probabilities[c]:.3f}" if p.probabilities else "-" for c in classes]
        note = f"abstained: {p.abstained}" if p.abstained else "; ".join(p.notes)
        rows.append([p.file, p.predicted or "ABSTAIN", *shown, lungs, note])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])
