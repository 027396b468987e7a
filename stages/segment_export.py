r"""Export one prepared dataset for Ultralytics: PNG images, YOLO-seg polygon labels (one per lung), data.yaml.

    python stages/segment_export.py --dataset lungs --data data/prepared/lungs --out data/segment/lungs

Writes the export folder with the classifiers' train/val/test split; images without a lung mask are
left out and counted in its export.json.
"""

from __future__ import annotations

from cxr.io.arrays import SplitArrays, split_dir
from cxr.params import SPLITS, Classes, freeze_imports, stage_arguments, stage_params
from cxr.segment.export import export_dataset
from cxr.segment.params import LabelMode


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, dataset=True, paths={
        "data": "the prepared dataset to export", "out": "the export folder to write"})
    params = stage_params({"classes": Classes, "segment.label_mode": LabelMode})

    splits = {split: SplitArrays.load(split_dir(args.data, split)) for split in SPLITS}
    report = export_dataset(splits, args.out, params["segment.label_mode"], params["classes"])

    print(f"{args.dataset}: exported " + ", ".join(f"{split} {report['images'][split]}" for split in SPLITS)
          + f" images ({params['segment.label_mode']} labels); without a mask: {sum(report['without_mask'].values())}")


if __name__ == "__main__":
    freeze_imports()
    main()
