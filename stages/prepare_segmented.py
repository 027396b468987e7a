r"""Build a lungs view whose masks the trained segmenter predicts, for a source that ships none (Kermany,
the original study's full X-rays) or to measure what segmentation errors cost the classifiers (the cascade).

    python stages/prepare_segmented.py --dataset lungs_segmented --index data/index/synthetic \
        --segmenter models/segment/segmenter.pt --out data/prepared/lungs_segmented \
        --report reports/data/views/lungs_segmented.json

Reads `segmented_dataset.<name>` (the keys of a `dataset` entry). Writes the prepared dataset and the view
report, with the anatomical checks of the predicted masks.
"""

from __future__ import annotations

from cxr.data.index import RawChanged
from cxr.data.params import DatasetParams, PrepareParams
from cxr.data.prepare import ViewError, prepare_view
from cxr.params import Classes, Device, freeze_imports, resolve_device, stage_arguments, stage_params
from cxr.segment.films import film_mask
from cxr.segment.params import Confidence
from cxr.segment.scores import mask_checks, summarise_checks
from cxr.segment.train import SegmenterError, load_segmenter


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, dataset=True, paths={
        "index": "the index folder of the dataset's source", "segmenter": "the lung segmenter's checkpoint",
        "out": "the prepared dataset's folder to write", "report": "the view report to write"})
    dataset_key = f"segmented_dataset.{args.dataset}"
    params = stage_params({"classes": Classes, "device": Device, dataset_key: DatasetParams, "prepare": PrepareParams,
                           "segment.confidence": Confidence})
    if params[dataset_key].view != "lungs":
        raise SystemExit(f"error: {dataset_key}.view: must be lungs (the segmenter's masks cut out the lungs)")

    device = resolve_device(params["device"])
    try:
        net, summary = load_segmenter(args.segmenter, device)
    except SegmenterError as err:
        raise SystemExit(f"error: {err}") from None
    checks = []  # the anatomical checks of each predicted mask, not the masks: a large source's would not fit in memory

    def masker(pixels):
        mask = film_mask(net, pixels, summary["image_size"], params["segment.confidence"], len(summary["names"]), device)
        checks.append(mask_checks(mask, "full"))
        return mask

    try:
        report = prepare_view(args.dataset, params[dataset_key], params["prepare"], params["classes"], args.index,
                              args.out, args.report, masker=masker, mask_summary=lambda: summarise_checks(checks))
    except (ViewError, RawChanged, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None

    checks = report["segmenter_mask_checks"]
    print(f"{args.dataset}: {report['images_kept']} films cut out with the segmenter's masks; plausible "
          f"{checks.get('plausible', float('nan')):.2f}, empty {checks.get('empty', 0)}, >2 lungs {checks.get('more_than_two', 0)}")


if __name__ == "__main__":
    freeze_imports()
    main()
