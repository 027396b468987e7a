"""Write the embedded default data: a seeded synthetic chest X-ray set in the real datasets' layout.

    python stages/generate.py

Same seed and params, byte-identical files; see cxr/synthetic/generator.py for what the images contain.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxr.params import stage_arguments, stage_params
from cxr.synthetic.generator import write_dataset
from cxr.synthetic.params import GenerateParams


def main(argv: list[str] | None = None) -> None:
    stage_arguments(__doc__, argv)
    generate: GenerateParams = stage_params({"generate": GenerateParams})["generate"]

    summary = write_dataset(
        Path(generate.out_dir),
        seed=generate.seed,
        images_per_class=generate.images_per_class,
        image_size=generate.image_size,
        shortcut=generate.shortcut,
        follow_up_fraction=generate.follow_up_fraction,
        duplicate_fraction=generate.duplicate_fraction,
    )
    print(f"wrote {generate.out_dir}: {json.dumps(summary)}")


if __name__ == "__main__":
    main()
