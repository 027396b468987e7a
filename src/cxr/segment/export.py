"""A prepared dataset exported for Ultralytics: PNG images, YOLO-seg polygon labels and a dataset YAML.

The images are the prepared split arrays (cxr.data.prepare), so the segmenter's train/val/test split is
the classifiers' split and their test images stay unseen by both. Masks come from the view: the source's
lung masks, or, for an already lung-segmented image, its non-black region (the index's "from image").
Images without a mask are left out of the export and counted: as unlabelled images YOLO would learn that
they contain no lungs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from cxr.io.arrays import SplitArrays
from cxr.io.files import atomic_dir, write_json
from cxr.params import SPLITS
from cxr.segment.labels import label_lines, mask_to_polygons

EXPORT_REPORT = "export.json"
DATA_YAML = "data.yaml"


def label_names(label_mode: str, classes: list[str]) -> list[str]:
    return ["lung"] if label_mode == "lung" else list(classes)


def export_dataset(splits: dict[str, SplitArrays], out: Path, label_mode: str, classes: list[str]) -> dict:
    """Writes out/{images,labels}/<split>/, out/data.yaml and out/export.json; returns the export report."""
    report = {"label_mode": label_mode, "images": {}, "lungs": {}, "without_mask": {}, "more_than_two_lungs": {}}
    with atomic_dir(out) as tmp:
        for split in SPLITS:
            arrays = splits[split]
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            exported = lungs = without = many = 0
            for image, mask, label, name in zip(arrays.images, arrays.masks, arrays.labels, arrays.names):
                polygons = mask_to_polygons(mask)
                if not polygons:
                    without += 1
                    continue
                stem = file_stem(str(name))
                if (tmp / "images" / split / f"{stem}.png").exists():  # x.png beside x.jpg, or a__b/c beside a/b__c
                    raise ValueError(f"{name} and another image of the {split} split both export as {stem}.png: "
                                     f"rename one of them in the raw source")
                Image.fromarray(np.asarray(image)).save(tmp / "images" / split / f"{stem}.png", optimize=False)
                class_id = 0 if label_mode == "lung" else int(label)
                lines = label_lines(polygons, mask.shape, class_id)
                (tmp / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
                exported, lungs, many = exported + 1, lungs + len(polygons), many + (len(polygons) > 2)
            report["images"][split], report["lungs"][split] = exported, lungs
            report["without_mask"][split], report["more_than_two_lungs"][split] = without, many
        # No `path:` key: Ultralytics then resolves the splits against this file's folder, wherever it lies.
        data = {"train": "images/train", "val": "images/val", "test": "images/test",
                "names": dict(enumerate(label_names(label_mode, classes)))}
        (tmp / DATA_YAML).write_text(yaml.safe_dump(data, sort_keys=False))
        write_json(tmp / EXPORT_REPORT, report)
    return report


def file_stem(name: str) -> str:
    """A flat file name for a raw source path (`COVID/images/COVID-1.png` -> `COVID__images__COVID-1`)."""
    return Path(name).with_suffix("").as_posix().replace("/", "__")
