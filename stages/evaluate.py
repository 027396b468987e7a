r"""Evaluate trained classifiers on their dataset's test split, or on another dataset's (cross-dataset test).

    python stages/evaluate.py --model resnet18 --dataset full --models models/full --data data/prepared/full \
        --metrics metrics/classify/full --reports reports/evaluate/full --plots reports/plots/evaluate/full
    python stages/evaluate.py --models-of models --dataset full --tested-on external_full --models models/full \
        --data data/prepared/external_full --metrics metrics/cross/full-on-external_full \
        --reports reports/cross/full-on-external_full --plots reports/plots/cross/full-on-external_full

`--models-of` names the params key listing the models (`models`, `probe.models`): a cross test scores every
one of them in one process, since loading torch costs more than scoring a test split. Writes, per model, the
flat metrics JSON, the per-image predictions, the confusion / ROC data and which checkpoint was scored (its MD5), and for all of them together the
figures' data of `dvc plots`.
"""

from __future__ import annotations

from cxr.io.arrays import SplitArrays, split_dir
from cxr.io.files import file_md5, write_json
from cxr.io.view_spec import ViewSpec, view_file
from cxr.metrics.classification import classification_metrics, metrics_line, write_evaluation, write_plot_data
from cxr.metrics.outputs import EvaluationFiles
from cxr.metrics.params import EvaluateParams
from cxr.models.checkpoints import CheckpointError, checkpoint_in, load_classifier
from cxr.models.inference import SplitBatches, predict_probabilities
from cxr.params import Classes, Device, Names, freeze_imports, resolve_device, stage_arguments, stage_params


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, model="one or several", dataset=True, tested_on=True, paths={
        "models": "the folder of the checkpoints trained on --dataset", "data": "the prepared dataset tested on",
        "metrics": "the folder of each model's flat metrics JSON (written)",
        "reports": "the folder of each model's predictions, confusion and ROC data and checkpoint record (written)",
        "plots": "the folder of every model's ROC curves and confusion records for `dvc plots` (written)"})
    schemas = {"classes": Classes, "device": Device, "evaluate": EvaluateParams}
    if args.models_of:
        schemas[args.models_of] = Names
    else:
        # One model checks its checkpoint against its params entry; a cross test reads the checkpoints that
        # entry already made (a changed entry retrains them), so it depends on the list and not on the entries.
        schemas[f"model.{args.model}.arch"] = str
    params = stage_params(schemas)
    models = params[args.models_of] if args.models_of else [args.model]
    evaluate: EvaluateParams = params["evaluate"]
    device = resolve_device(params["device"])
    test = SplitArrays.load(split_dir(args.data, "test"))
    view = ViewSpec.read(view_file(args.data))

    scored = {}
    for model_name in models:
        checkpoint = checkpoint_in(args.models, model_name)
        try:
            model, meta = load_classifier(checkpoint, device, model=model_name, dataset=args.dataset,
                                          classes=params["classes"], view=view,
                                          arch=None if args.models_of else params[f"model.{model_name}.arch"])
        except CheckpointError as err:
            raise SystemExit(f"error: {err}") from None

        batches = SplitBatches(test, evaluate.batch_size, device)
        probabilities = predict_probabilities(model, batches, meta["image_size"], meta["mean"], meta["std"], device)
        metrics = classification_metrics(test.labels, probabilities, meta["classes"],
                                         calibration_bins=evaluate.calibration_bins,
                                         bootstrap_resamples=evaluate.bootstrap_resamples,
                                         confidence_level=evaluate.confidence_level, seed=evaluate.seed)
        out = EvaluationFiles(args.metrics, args.reports, model_name)
        write_evaluation(out.metrics, out.predictions, out.confusion, out.roc,
                         metrics, test.labels, test.names, probabilities, meta["classes"])
        # The scores' provenance: the report and the model cards name the checkpoint by this hash, which dvc.lock
        # records too (`git log -S <md5> -- dvc.lock` finds the commit that trained it).
        write_json(out.checkpoint_record, {"checkpoint": checkpoint.as_posix(), "md5": file_md5(checkpoint)})
        scored[model_name] = (test.labels, probabilities)

        across = f" on {args.tested_on}" if args.tested_on not in (None, args.dataset) else ""
        print(f"{model_name}/{args.dataset}{across}: {metrics_line(metrics)}")

    write_plot_data(args.plots, scored, params["classes"])


if __name__ == "__main__":
    freeze_imports()
    main()
