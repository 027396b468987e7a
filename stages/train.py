r"""Train one classifier on one prepared dataset, keeping the epoch with the best validation macro-F1.

    python stages/train.py --model resnet18 --dataset full --data data/prepared/full \
        --checkpoint models/full/resnet18.pt --log reports/train/full/resnet18

With train.processes > 1 it starts itself under torchrun, that many processes (one per GPU, or CPU processes).

Writes the checkpoint and the dvclive log: its summary (metrics.json) and a curve per metric (plots/metrics/).
"""

from __future__ import annotations

import sys

from cxr.io.arrays import SplitArrays, split_dir
from cxr.io.log import EpochLogError
from cxr.io.view_spec import ViewSpec, view_file
from cxr.models.params import ModelParams
from cxr.models.registry import WeightsError
from cxr.params import Classes, Device, freeze_imports, resolve_device, stage_arguments, stage_params
from cxr.training.loop import TrainingError, train_classifier
from cxr.training.params import TrainParams
from cxr.training.processes import join_processes, leave_processes, run, torchrun_command
from cxr.training.resume import resume_file, run_key


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, model=True, dataset=True, paths={
        "data": "the prepared dataset: its train and val splits, and view.json",
        "checkpoint": "the checkpoint to write (the best epoch's)",
        "log": "dvclive's folder to write: the summary and a curve per metric"})
    model_key = f"model.{args.model}"
    params = stage_params({"classes": Classes, "device": Device, "train": TrainParams, model_key: ModelParams})
    try:
        torchrun = torchrun_command(params["train"].processes, __file__, sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if torchrun:
        if code := run(torchrun):
            raise SystemExit(code)
        return
    processes, device = join_processes(resolve_device(params["device"]))

    train_split = SplitArrays.load(split_dir(args.data, "train"))
    val_split = SplitArrays.load(split_dir(args.data, "val"))
    # How raw X-rays became this model's inputs, so prediction can redo it with cxr.data.views.make_view.
    meta = {"model": args.model, "dataset": args.dataset, "preprocessing": ViewSpec.read(view_file(args.data)).as_dict()}
    # A single process killed mid-run (or its `dvc repro`) goes on from its last completed epoch when rerun.
    resume = None
    if processes.world == 1:
        settings = {"model": params[model_key].model_dump(), "train": params["train"].model_dump(),
                    "classes": params["classes"], "meta": meta, "device": device.type}
        data = [path for split in ("train", "val") for path in split_dir(args.data, split).iterdir()]
        resume = (resume_file(args.checkpoint), run_key(settings, data))
    try:
        meta = train_classifier(train_split, val_split, params["classes"], params[model_key], params["train"],
                                device, args.checkpoint, args.log, meta, desc=f"{args.model}/{args.dataset}",
                                processes=processes, resume=resume)
    except WeightsError as err:
        raise SystemExit(f"error: {model_key}.weights: {err}") from None
    except (TrainingError, EpochLogError) as err:
        raise SystemExit(f"error: {args.dataset}: {err}") from None
    finally:
        leave_processes()
    if not processes.writes:
        return
    print(f"saved {args.checkpoint} (epoch {meta['epoch']}, val macro-F1 {meta['val_macro_f1']:.4f})")


if __name__ == "__main__":
    freeze_imports()
    main()
