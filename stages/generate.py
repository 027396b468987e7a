"""Write the embedded default data: seeded synthetic chest X-rays in the real datasets' layouts.

    python stages/generate.py --name synthetic                    # generate.synthetic: class folders with images/
                                                                  # and masks/, and its twin with class markers
    python stages/generate.py --radiography --name radiography    # generate_radiography.radiography: a second
                                                                  # hospital, zipped like the Radiography Database

Same seed and params, byte-identical files; see cxr/synthetic/generator.py for what the images contain.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cxr.params import freeze_imports, stage_params
from cxr.synthetic.generator import write_dataset, write_radiography_zip
from cxr.synthetic.params import GenerateParams, RadiographyParams


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--radiography", action="store_true", help="write a generate_radiography zip instead")
    parser.add_argument("--name", required=True, help="the generator's entry in the generate (or generate_radiography) section")
    args = parser.parse_args(argv)

    if args.radiography:
        key = f"generate_radiography.{args.name}"
        radiography: RadiographyParams = stage_params({key: RadiographyParams})[key]
        summary = write_radiography_zip(Path(radiography.out_zip), seed=radiography.seed,
                                        images_per_class=radiography.images_per_class,
                                        image_size=radiography.image_size, mask_size=radiography.mask_size,
                                        gamma=radiography.gamma)
        print(f"wrote {radiography.out_zip}: {json.dumps(summary)}")
        return

    key = f"generate.{args.name}"
    generate: GenerateParams = stage_params({key: GenerateParams})[key]
    summary = write_dataset(
        Path(generate.out_dir),
        seed=generate.seed,
        images_per_class=generate.images_per_class,
        image_size=generate.image_size,
        shortcut=generate.shortcut,
        shortcut_dir=Path(generate.shortcut_dir),
        follow_up_fraction=generate.follow_up_fraction,
        duplicate_fraction=generate.duplicate_fraction,
    )
    print(f"wrote {generate.out_dir} and its shortcut twin {generate.shortcut_dir}: {json.dumps(summary)}")


if __name__ == "__main__":
    freeze_imports()
    main()
