r"""Train the YOLOv8n-seg lung segmenter offline on the exported datasets named in `segment.train_on`.

    python stages/segment_train.py --exports data/segment --checkpoint models/segment/segmenter.pt \
        --log reports/segment/train

Each export is <exports>/<name>. Writes the checkpoint (loadable with `YOLO(path)` too) and the dvclive log.
"""

from __future__ import annotations

from cxr.io.log import EpochLogError
from cxr.params import Classes, Device, Names, freeze_imports, resolve_device, stage_arguments, stage_params
from cxr.segment.params import LabelMode, SegmentTrainParams
from cxr.segment.train import SegmentTrainingError, train_segmenter


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, paths={
        "exports": "the folder of segment_export's exports, one per dataset", "checkpoint": "the checkpoint to write",
        "log": "dvclive's folder to write"})
    params = stage_params({"classes": Classes, "device": Device, "segment.label_mode": LabelMode,
                           "segment.train_on": Names, "segment.train": SegmentTrainParams})

    exports = [args.exports / dataset for dataset in params["segment.train_on"]]
    missing = [str(export) for export in exports if not export.is_dir()]
    if missing:
        raise SystemExit(f"error: segment.train_on: no export at {', '.join(missing)}; each name must be in `datasets` "
                         f"(exported by segment_export), then run `dvc repro`")
    try:
        summary = train_segmenter(params["segment.train"], params["segment.label_mode"], params["classes"], exports,
                                  resolve_device(params["device"]), args.checkpoint, args.log)
    except (SegmentTrainingError, EpochLogError) as err:
        raise SystemExit(f"error: {err}") from None

    print(f"saved {args.checkpoint} (epoch {summary['epoch']} of {summary['epochs']}, fitness {summary['fitness']:.4f})")


if __name__ == "__main__":
    freeze_imports()
    main()
