"""Evaluate one trained classifier on its dataset's test split.

    python -m stages.evaluate --model resnet18 --dataset full

Writes the flat metrics JSON, the per-image predictions and the confusion / ROC plot data.
"""

from __future__ import annotations

import pandas as pd
from torch.utils.data import DataLoader

from stages.datasets import SplitArrays, tensors
from stages.files import atomic_dir, atomic_path, write_json
from stages.metrics import classification_metrics, confusion_records, roc_records, slug
from stages.models import load_checkpoint, predict_probabilities, resolve_device
from stages.params import stage_arguments
from stages.paths import evaluation_dir, metrics_file, model_file, split_file


def main(argv: list[str] | None = None) -> None:
    params, args = stage_arguments(__doc__, argv, model=True, dataset=True)
    device = resolve_device(params.device)
    model, meta = load_checkpoint(model_file(args.dataset, args.model), device)
    classes = meta["classes"]
    if classes != params.classes:
        raise SystemExit(f"error: {model_file(args.dataset, args.model)} was trained on classes {classes}, "
                         f"params.yaml now lists {params.classes}: retrain with `dvc repro`")

    test = SplitArrays.load(split_file(args.dataset, "test"))
    loader = DataLoader(tensors(test), batch_size=params.evaluate.batch_size)
    probabilities = predict_probabilities(model, loader, meta["image_size"], meta["mean"], meta["std"], device)
    predictions = probabilities.argmax(axis=1)

    metrics = classification_metrics(
        test.labels, probabilities, classes,
        calibration_bins=params.evaluate.calibration_bins,
        bootstrap_resamples=params.evaluate.bootstrap_resamples,
        confidence_level=params.evaluate.confidence_level,
        seed=params.seed,
    )
    write_json(metrics_file(args.dataset, args.model), metrics)

    out = evaluation_dir(args.dataset, args.model)
    table = pd.DataFrame({"name": test.names, "actual": [classes[i] for i in test.labels],
                          "predicted": [classes[i] for i in predictions]})
    for index, name in enumerate(classes):
        table[f"p_{slug(name)}"] = probabilities[:, index].round(6)
    with atomic_path(out / "predictions.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json(out / "confusion.json", confusion_records(test.labels, predictions, classes))
    with atomic_dir(out / "roc") as roc_dir:
        for index, name in enumerate(classes):
            write_json(roc_dir / f"{slug(name)}.json", roc_records(test.labels, probabilities, index))

    print(f"{args.model}/{args.dataset}: accuracy {metrics['accuracy']:.3f} "
          f"[{metrics['accuracy_ci_low']:.3f}, {metrics['accuracy_ci_high']:.3f}], macro-F1 {metrics['macro_f1']:.3f}, "
          f"AUC {'n/a' if metrics['roc_auc_macro'] is None else format(metrics['roc_auc_macro'], '.3f')}, "
          f"ECE {metrics['ece']:.3f}")


if __name__ == "__main__":
    main()
