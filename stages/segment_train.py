"""Train the YOLOv8n-seg lung segmenter offline on the exported datasets named in `segment.train_on`.

    python stages/segment_train.py

Writes models/segment/segmenter.pt (loadable with `YOLO(path)` too) and the dvclive log reports/segment/train/.
"""

from __future__ import annotations

from cxr.io.log import EpochLogError
from cxr.params import Classes, Device, Names, freeze_imports, resolve_device, stage_arguments, stage_params
from cxr.paths import SEGMENT_TRAIN_LOG, SEGMENTER_FILE, segment_export_dir
from cxr.segment.params import LabelMode, SegmentTrainParams
from cxr.segment.train import SegmentTrainingError, train_segmenter


def main(argv: list[str] | None = None) -> None:
    stage_arguments(__doc__, argv)
    params = stage_params({"classes": Classes, "device": Device, "segment.label_mode": LabelMode,
                           "segment.train_on": Names, "segment.train": SegmentTrainParams})

    exports = [segment_export_dir(dataset) for dataset in params["segment.train_on"]]
    missing = [str(export) for export in exports if not export.is_dir()]
    if missing:
        raise SystemExit(f"error: segment.train_on: no export at {', '.join(missing)}; each name must be in `datasets` "
                         f"(exported by segment_export), then run `dvc repro`")
    try:
        summary = train_segmenter(params["segment.train"], params["segment.label_mode"], params["classes"], exports,
                                  resolve_device(params["device"]), SEGMENTER_FILE, SEGMENT_TRAIN_LOG)
    except (SegmentTrainingError, EpochLogError) as err:
        raise SystemExit(f"error: {err}") from None

    print(f"saved {SEGMENTER_FILE} (epoch {summary['epoch']} of {summary['epochs']}, fitness {summary['fitness']:.4f})")


if __name__ == "__main__":
    freeze_imports()
    main()
