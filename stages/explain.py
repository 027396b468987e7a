r"""Explain one trained classifier: Grad-CAM and saliency maps of its test images, and where they fall.

    python stages/explain.py --model resnet18 --dataset full --checkpoint models/full/resnet18.pt \
        --data data/prepared/full --predictions reports/evaluate/full/resnet18/predictions.csv \
        --metrics metrics/explain/full/resnet18.json --out reports/explain/full/resnet18

A seeded class-balanced sample of the test split plus its misclassified images (most confidently wrong
first, up to a cap). Writes the flat metrics JSON (lung energy fraction and lift, pointing game, ROAD
faithfulness, lung-zone distribution, with bootstrap intervals), the maps (maps.npz) and one panel per class.
"""

from __future__ import annotations

from cxr.explain.figures import write_class_panels
from cxr.explain.params import ExplainParams
from cxr.explain.results import explanation_file
from cxr.explain.run import explain_split, read_predictions
from cxr.io.arrays import SplitArrays, split_dir
from cxr.io.files import atomic_dir, write_json
from cxr.io.view_spec import ViewSpec, view_file
from cxr.models.checkpoints import CheckpointError, load_classifier
from cxr.params import Classes, Device, freeze_imports, resolve_device, stage_arguments, stage_params


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, model=True, dataset=True, paths={
        "checkpoint": "the model's checkpoint",
        "data": "the prepared dataset it was trained on: its test split and view.json",
        "predictions": "the evaluate stage's predictions of the model on that test split",
        "metrics": "the flat metrics JSON to write",
        "out": "the folder to write the maps and the class panels to"})
    arch_key = f"model.{args.model}.arch"
    params = stage_params({"classes": Classes, "device": Device, "explain": ExplainParams, arch_key: str,
                           "evaluate.bootstrap_resamples": int, "evaluate.confidence_level": float})
    explain: ExplainParams = params["explain"]

    device = resolve_device(params["device"])
    try:
        model, meta = load_classifier(args.checkpoint, device, model=args.model, dataset=args.dataset,
                                      classes=params["classes"], view=ViewSpec.read(view_file(args.data)),
                                      arch=params[arch_key])
    except CheckpointError as err:
        raise SystemExit(f"error: {err}") from None

    test = SplitArrays.load(split_dir(args.data, "test"))
    try:
        predictions, probabilities = read_predictions(args.predictions, test.names, meta["classes"])
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    explained, metrics = explain_split(model, meta, test, predictions, probabilities, explain, device,
                                       resamples=params["evaluate.bootstrap_resamples"],
                                       confidence=params["evaluate.confidence_level"])

    with atomic_dir(args.out) as tmp:
        explained.save(explanation_file(tmp))
        write_class_panels(explained, tmp, title=f"{args.model} on {args.dataset}: {explain.method} at {metrics['layer']} "
                                                 f"({metrics['grid']}x{metrics['grid']}), {explain.saliency} saliency")
    write_json(args.metrics, metrics)
    print(f"{args.model}/{args.dataset}: {metrics['images']} images, {explain.method} at {metrics['layer']} "
          f"({metrics['grid']}x{metrics['grid']}); lung energy {metrics['cam_lung_energy']} "
          f"(lift {metrics['cam_lung_lift']}), pointing {metrics['cam_pointing']}, ROAD {metrics['road']}")


if __name__ == "__main__":
    freeze_imports()
    main()
