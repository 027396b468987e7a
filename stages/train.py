"""Train one classifier on one prepared dataset, keeping the epoch with the best validation macro-F1.

    python stages/train.py --model resnet18 --dataset full

Writes the checkpoint models/<dataset>/<model>.pt and the dvclive log reports/train/<dataset>/<model>/.
"""

from __future__ import annotations

import json

from cxr.io.arrays import SplitArrays
from cxr.models.inference import resolve_device
from cxr.models.params import ModelParams
from cxr.models.registry import WeightsError
from cxr.params import Classes, Device, stage_arguments, stage_params
from cxr.paths import model_file, split_dir, train_log_dir, view_file
from cxr.training.loop import TrainingError, train_classifier
from cxr.training.params import TrainParams


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, model=True, dataset=True)
    model_key = f"model.{args.model}"
    params = stage_params({"classes": Classes, "device": Device, "train": TrainParams, model_key: ModelParams})

    train_split = SplitArrays.load(split_dir(args.dataset, "train"))
    val_split = SplitArrays.load(split_dir(args.dataset, "val"))
    # How raw X-rays became this model's inputs, so prediction can redo it with cxr.data.views.make_view.
    meta = {"model": args.model, "dataset": args.dataset, "preprocessing": json.loads(view_file(args.dataset).read_text())}
    try:
        meta = train_classifier(train_split, val_split, params["classes"], params[model_key], params["train"],
                                resolve_device(params["device"]), model_file(args.dataset, args.model),
                                train_log_dir(args.dataset, args.model), meta, desc=f"{args.model}/{args.dataset}")
    except WeightsError as err:
        raise SystemExit(f"error: {model_key}.weights: {err}") from None
    except TrainingError as err:
        raise SystemExit(f"error: {args.dataset}: {err}") from None

    print(f"saved {model_file(args.dataset, args.model)} (epoch {meta['epoch']}, val macro-F1 {meta['val_macro_f1']:.4f})")


if __name__ == "__main__":
    main()
