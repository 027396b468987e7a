"""Explain one trained classifier: Grad-CAM and saliency maps of its test images, and where they fall.

    python stages/explain.py --model resnet18 --dataset full

A seeded class-balanced sample of the test split plus its misclassified images (most confidently wrong
first, up to a cap). Writes the flat metrics JSON (lung energy fraction and lift, pointing game, ROAD
faithfulness, lung-zone distribution, with bootstrap intervals), the maps (maps.npz) and one panel per class.
"""

from __future__ import annotations

from cxr.explain.figures import write_class_panels
from cxr.explain.params import ExplainParams
from cxr.explain.run import explain_split, read_predictions
from cxr.io.arrays import SplitArrays
from cxr.io.files import atomic_dir, write_json
from cxr.io.view_spec import ViewSpec
from cxr.models.checkpoints import CheckpointError, load_classifier
from cxr.params import Classes, Device, freeze_imports, resolve_device, stage_arguments, stage_params
from cxr.paths import explain_dir, explain_metrics_file, predictions_file, split_dir, view_file


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, model=True, dataset=True)
    arch_key = f"model.{args.model}.arch"
    params = stage_params({"classes": Classes, "device": Device, "explain": ExplainParams, arch_key: str,
                           "evaluate.bootstrap_resamples": int, "evaluate.confidence_level": float})
    explain: ExplainParams = params["explain"]

    device = resolve_device(params["device"])
    try:
        model, meta = load_classifier(args.dataset, args.model, device, classes=params["classes"],
                                      view=ViewSpec.read(view_file(args.dataset)), arch=params[arch_key])
    except CheckpointError as err:
        raise SystemExit(f"error: {err}") from None

    test = SplitArrays.load(split_dir(args.dataset, "test"))
    try:
        predictions, probabilities = read_predictions(predictions_file(args.dataset, args.model), test.names, meta["classes"])
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    explained, metrics = explain_split(model, meta, test, predictions, probabilities, explain, device,
                                       resamples=params["evaluate.bootstrap_resamples"],
                                       confidence=params["evaluate.confidence_level"])

    with atomic_dir(explain_dir(args.dataset, args.model)) as tmp:
        explained.save(tmp / "maps.npz")
        write_class_panels(explained, tmp, title=f"{args.model} on {args.dataset}: {explain.method} at {metrics['layer']} "
                                                 f"({metrics['grid']}x{metrics['grid']}), {explain.saliency} saliency")
    write_json(explain_metrics_file(args.dataset, args.model), metrics)
    print(f"{args.model}/{args.dataset}: {metrics['images']} images, {explain.method} at {metrics['layer']} "
          f"({metrics['grid']}x{metrics['grid']}); lung energy {metrics['cam_lung_energy']} "
          f"(lift {metrics['cam_lung_lift']}), pointing {metrics['cam_pointing']}, ROAD {metrics['road']}")


if __name__ == "__main__":
    freeze_imports()
    main()
