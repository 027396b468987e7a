"""Write the embedded default data: a seeded synthetic chest X-ray set in the real datasets' layout.

    python -m stages.generate

Same seed and params, byte-identical files; see stages/synthetic.py for what the images contain.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.params import stage_arguments
from stages.synthetic import write_dataset


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_arguments(__doc__, argv)
    settings = params.generate
    summary = write_dataset(
        Path(settings.out_dir),
        seed=params.seed,
        images_per_class=settings.images_per_class,
        image_size=settings.image_size,
        shortcut=settings.shortcut,
        follow_up_fraction=settings.follow_up_fraction,
        duplicate_fraction=settings.duplicate_fraction,
    )
    print(f"wrote {settings.out_dir}: {json.dumps(summary)}")


if __name__ == "__main__":
    main()
