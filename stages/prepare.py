"""Validate, deduplicate and split one raw dataset into compact arrays.

    python stages/prepare.py --dataset full

Writes data/prepared/<dataset>/{train,val,test}.npz, manifest.csv and view.json, and the data report
reports/data/<dataset>.json listing every skipped file with its reason (see cxr/data/prepare.py).
"""

from __future__ import annotations

from cxr.data.params import DatasetParams, PrepareParams
from cxr.data.prepare import DatasetError, prepare_dataset
from cxr.params import Classes, stage_arguments, stage_params
from cxr.paths import SPLITS


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, dataset=True)
    params = stage_params({"classes": Classes, f"dataset.{args.dataset}": DatasetParams, "prepare": PrepareParams})

    try:
        report = prepare_dataset(args.dataset, params[f"dataset.{args.dataset}"], params["prepare"], params["classes"])
    except DatasetError as err:
        raise SystemExit(f"error: {err}") from None

    print(f"{args.dataset}: kept {report['images_kept']} images, skipped {report['images_skipped']}, "
          f"{len(report['duplicate_groups'])} duplicate groups; "
          + ", ".join(f"{split} {sum(report['counts'][split].values())}" for split in SPLITS))


if __name__ == "__main__":
    main()
