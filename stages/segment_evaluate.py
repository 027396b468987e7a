r"""The lung segmenter on one dataset's test split: Dice and IoU with intervals, mask mAP, failures, anatomy.

    python stages/segment_evaluate.py --dataset full --segmenter models/segment/segmenter.pt \
        --data data/prepared/full --metrics metrics/segment/evaluate/full.json \
        --predictions reports/segment/full/predictions.csv

Writes the flat metrics JSON and the per-image predictions CSV.
"""

from __future__ import annotations

import numpy as np

from cxr.io.arrays import SplitArrays, split_dir
from cxr.io.files import write_json
from cxr.io.view_spec import ViewSpec, view_file
from cxr.params import Classes, Device, freeze_imports, resolve_device, stage_arguments, stage_params
from cxr.segment.evaluate import image_record, segmentation_metrics, write_records
from cxr.segment.params import Confidence
from cxr.segment.predict import segment_lungs
from cxr.segment.train import SegmenterError, load_segmenter


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, dataset=True, paths={
        "segmenter": "the lung segmenter's checkpoint", "data": "the prepared dataset: its test split and view.json",
        "metrics": "the flat metrics JSON to write", "predictions": "the per-image CSV to write"})
    params = stage_params({"classes": Classes, "device": Device, "segment.confidence": Confidence, "evaluate.seed": int,
                           "evaluate.bootstrap_resamples": int, "evaluate.confidence_level": float,
                           "evaluate.calibration_bins": int})
    classes = params["classes"]

    device = resolve_device(params["device"])
    try:
        net, summary = load_segmenter(args.segmenter, device)
    except SegmenterError as err:
        raise SystemExit(f"error: {err}") from None
    test = SplitArrays.load(split_dir(args.data, "test"))
    view = ViewSpec.read(view_file(args.data)).view
    found = list(segment_lungs(net, test.images, summary["image_size"], params["segment.confidence"],
                               len(summary["names"]), device))
    records = [image_record(str(name), classes[label], lungs, np.asarray(mask), view, classes, summary["label_mode"])
               for name, label, lungs, mask in zip(test.names, test.labels, found, test.masks)]
    metrics = segmentation_metrics(test, found, records, classes, summary["label_mode"],
                                   resamples=params["evaluate.bootstrap_resamples"], level=params["evaluate.confidence_level"],
                                   seed=params["evaluate.seed"], calibration_bins=params["evaluate.calibration_bins"])

    write_records(args.predictions, records)
    write_json(args.metrics, metrics)
    print(f"segmenter on {args.dataset}: Dice {metrics['dice']:.3f} [{metrics['dice_ci_low']:.3f}, {metrics['dice_ci_high']:.3f}], "
          f"IoU {metrics['iou']:.3f}, mask mAP50 {metrics['mask_map50']:.3f}, mAP50-95 {metrics['mask_map50_95']:.3f}; "
          f"plausible {metrics['plausible']:.2f}, empty {metrics['empty']}, >2 lungs {metrics['more_than_two']}, "
          f"on the border {metrics['touches_border']}")


if __name__ == "__main__":
    freeze_imports()
    main()
