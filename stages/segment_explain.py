r"""Interpret the lung segmenter on one dataset's test split: attention (Grad-CAM of the lungs found), per-pixel confidence and
uncertainty, the worst-Dice gallery and the lung zones it covers and attends to by diagnosis.

    python stages/segment_explain.py --dataset full --segmenter models/segment/segmenter.pt \
        --data data/prepared/full --evaluation metrics/segment/evaluate/full.json \
        --predictions reports/segment/full/predictions.csv --metrics metrics/segment/explain/full.json \
        --gallery reports/segment/full/gallery.png --zones reports/segment/full/zones.png

Reads segment_evaluate's metrics and per-image records; writes the flat metrics JSON, the gallery and the zones figure.
"""

from __future__ import annotations

import json

import numpy as np

from cxr.explain.run import select_images
from cxr.io.arrays import SplitArrays, split_dir
from cxr.io.files import write_json
from cxr.params import Classes, Device, freeze_imports, resolve_device, stage_arguments, stage_params
from cxr.segment.evaluate import read_records, worst_first
from cxr.segment.figures import gallery_caption, write_gallery, write_zone_figure
from cxr.segment.interpret import attention_maps, interpretation_metrics, uncertainty_map
from cxr.segment.params import Confidence, GallerySize
from cxr.segment.predict import segment_lungs
from cxr.segment.train import SegmenterError, load_segmenter


def main(argv: list[str] | None = None) -> None:
    args = stage_arguments(__doc__, argv, dataset=True, paths={
        "segmenter": "the lung segmenter's checkpoint", "data": "the prepared dataset: its test split",
        "evaluation": "segment_evaluate's metrics JSON", "predictions": "segment_evaluate's per-image CSV",
        "metrics": "the flat metrics JSON to write", "gallery": "the worst masks' figure to write",
        "zones": "the lung zones figure to write"})
    params = stage_params({"classes": Classes, "device": Device, "segment.confidence": Confidence,
                           "segment.gallery": GallerySize, "explain.seed": int, "explain.images_per_class": int,
                           "evaluate.bootstrap_resamples": int, "evaluate.confidence_level": float})
    classes, confidence = params["classes"], params["segment.confidence"]

    device = resolve_device(params["device"])
    try:
        net, summary = load_segmenter(args.segmenter, device)
        test = SplitArrays.load(split_dir(args.data, "test"))
        records = read_records(args.predictions, test.names)
    except (SegmenterError, ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    # The classifier explanations' seeded class-balanced sample (explain.seed, explain.images_per_class): the
    # same films, and the worst masks on top.
    sample, _ = select_images(test.names, test.labels, test.labels, np.eye(len(classes))[test.labels], len(classes),
                              params["explain.images_per_class"], 0, params["explain.seed"])
    gallery = worst_first(records)[:params["segment.gallery"]]
    chosen = np.array(sorted(set(sample.tolist()) | set(gallery)), dtype=np.int64)

    images, masks = np.asarray(test.images[chosen]), np.asarray(test.masks[chosen])
    found = list(segment_lungs(net, images, summary["image_size"], confidence, len(summary["names"]), device))
    predicted = np.stack([lungs.lung_mask for lungs in found])
    uncertainty = np.stack([uncertainty_map(lungs) for lungs in found])
    attention = attention_maps(net, images, summary["image_size"], confidence, len(summary["names"]), device)
    in_sample = np.isin(chosen, sample)
    metrics = interpretation_metrics(attention[in_sample], uncertainty[in_sample], masks[in_sample], predicted[in_sample],
                                     test.labels[chosen][in_sample], classes,
                                     resamples=params["evaluate.bootstrap_resamples"],
                                     confidence=params["evaluate.confidence_level"], seed=params["explain.seed"])

    rows = [int(np.flatnonzero(chosen == index)[0]) for index in gallery]
    write_gallery(images[rows], masks[rows], predicted[rows], np.stack([found[k].confidence_map for k in rows]),
                  uncertainty[rows], attention[rows],
                  [gallery_caption(records[i]["name"], records[i]["label"], records[i]) for i in gallery],
                  f"Segmenter on {args.dataset}: the {len(gallery)} worst test masks", args.gallery)
    evaluation = json.loads(args.evaluation.read_text())
    write_zone_figure(evaluation, metrics, classes, f"Segmenter on {args.dataset}: lung zones segmented and attended to, "
                      f"by diagnosis", args.zones)
    write_json(args.metrics, metrics)
    shown = {key: "n/a" if metrics[key] is None else format(metrics[key], ".3f")  # undefined when nothing was found
             for key in ("attention_lung_energy", "attention_lung_lift", "uncertainty_on_border")}
    print(f"segmenter on {args.dataset}: Grad-CAM lung energy {shown['attention_lung_energy']} "
          f"(lift {shown['attention_lung_lift']}), uncertainty on the lung border {shown['uncertainty_on_border']}")


if __name__ == "__main__":
    freeze_imports()
    main()
