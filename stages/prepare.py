r"""Build one dataset: a view (full or lungs) of an indexed source, as memory-mappable split arrays.

    python stages/prepare.py --dataset full --index data/index/synthetic --out data/prepared/full \
        --report reports/data/views/full.json

Writes the prepared dataset ({train,val,test}/*.npy and view.json) and the view report, which counts the
images the view had to skip.
"""

from __future__ import annotations

from cxr.data.index import RawChanged
from cxr.data.params import DatasetParams, PrepareParams
from cxr.data.prepare import ViewError, prepare_view
from cxr.params import SPLITS, Classes, Workers, freeze_imports, stage_arguments, stage_params, worker_count


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, dataset=True, paths={
        "index": "the index folder of the dataset's source", "out": "the prepared dataset's folder to write",
        "report": "the view report to write"})
    dataset_key = f"dataset.{args.dataset}"
    params = stage_params({"classes": Classes, "workers": Workers, dataset_key: DatasetParams, "prepare": PrepareParams})

    try:
        report = prepare_view(args.dataset, params[dataset_key], params["prepare"], params["classes"], args.index,
                              args.out, args.report, worker_count(params["workers"]))
    except (ViewError, RawChanged, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None

    print(f"{args.dataset}: {report['images_kept']} images, skipped {report['images_skipped']} "
          f"({report['skipped_by_reason'] or 'none'}); "
          + ", ".join(f"{split} {sum(report['counts'][split].values())}" for split in SPLITS))


if __name__ == "__main__":
    freeze_imports()
    main()
