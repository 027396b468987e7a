"""Real-collection scale: 30,000 299-px PNGs through the index and both views, from a folder and from a zip.

    python benchmarks/data_scale.py [--images 30000] [--workdir /tmp/cxr-scale] [--keep]
    python benchmarks/data_scale.py --images 1200 --workdir data/raw --standin-only   # a small stand-in to try the README

A stand-in of the Kaggle COVID-19 Radiography Database's size and format (the real one cannot be
downloaded here): `<class>/images/<class>-<n>.png` at 299 px with 256-px 0/255 masks, drawn from a pool
of synthetic films, each copy shifted, zoomed, re-exposed and re-noised so that its dHash is its own
(the duplicate search then faces 30,000 distinct images, as on the real data). The zip is the folder
packed as Kaggle packs it (deflate). In a scratch DVC repository, per source kind:

1. `index` stage: read, validate, hash every file, group and split (wall time, peak memory);
2. `prepare` stage for the full and the lungs view (wall time, peak memory);
3. `dvc add` of the raw data, then `dvc status` with it tracked (median of 3).

Peak memory is the largest resident set of any one process (the stage or one of its decoding
workers), from GNU time. Targets (issue 6): index + both views under 3 minutes on 2 cores; `dvc status`
under 5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cxr.synthetic.generator import render_case  # noqa: E402

FOLDERS = {"COVID": "COVID-19", "Normal": "Normal", "Viral Pneumonia": "Pneumonia", "Lung_Opacity": "Pneumonia"}
POOL = 64  # distinct films per class; the copies vary them


def _pool(folder: str) -> list[tuple[np.ndarray, np.ndarray]]:
    index = list(FOLDERS).index(folder)
    return [render_case(np.random.default_rng([11, index, n]), FOLDERS[folder], 299) for n in range(POOL)]


def _write_chunk(args: tuple[Path, str, int, int]) -> int:
    root, folder, start, stop = args
    films = _pool(folder)
    for n in range(start, stop):
        rng = np.random.default_rng([12, list(FOLDERS).index(folder), n])
        image, mask = films[n % POOL]
        shift = rng.integers(-25, 26, 2)
        zoom = rng.uniform(0.85, 1.15)
        side = max(64, round(299 * zoom))
        varied = Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR)
        canvas = Image.new("L", (299, 299))
        canvas.paste(varied, (int((299 - side) // 2 + shift[0]), int((299 - side) // 2 + shift[1])))
        pixels = np.asarray(canvas, dtype=np.float32) / 255
        pixels = pixels ** rng.uniform(0.7, 1.4) + rng.normal(0, 0.02, pixels.shape)
        Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(
            root / folder / "images" / f"{folder}-{n}.png", compress_level=6)
        moved = Image.new("L", (299, 299))
        moved.paste(Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side), Image.Resampling.NEAREST),
                    (int((299 - side) // 2 + shift[0]), int((299 - side) // 2 + shift[1])))
        moved.resize((256, 256), Image.Resampling.NEAREST).save(root / folder / "masks" / f"{folder}-{n}.png")
    return stop - start


def make_standin(root: Path, images: int) -> None:
    per_folder = images // len(FOLDERS)
    for folder in FOLDERS:
        (root / folder / "images").mkdir(parents=True, exist_ok=True)
        (root / folder / "masks").mkdir(parents=True, exist_ok=True)
    chunks = [(root, folder, start, min(start + 500, per_folder)) for folder in FOLDERS
              for start in range(0, per_folder, 500)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        sum(pool.map(_write_chunk, chunks))


def make_zip(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(folder.rglob("*.png")):
            archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")


def run(repo: Path, *command: str) -> tuple[float, float]:
    """(wall seconds, peak MiB of the largest process) of one command."""
    # GNU time reports the largest resident set among the command and the processes it waited for.
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *command], cwd=repo,
                            env=dict(os.environ, PYTHONPATH=str(repo / "src")), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return wall, int(result.stderr.strip().splitlines()[-1]) / 1024


def scratch_repo(work: Path, raw: Path) -> Path:
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for name in ("stages", "src"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["source"] = {"big": {"path": str(raw), "layout": "auto", "class_map": {}, "patient_id_pattern": "layout",
                                "own_split": False}}
    params["dataset"] = {"big_full": {"source": "big", "view": "full"}, "big_lungs": {"source": "big", "view": "lungs"}}
    params["prepare"]["image_size"] = 299
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    return repo


def measure(work: Path, raw: Path, label: str) -> dict:
    repo = scratch_repo(work, raw)
    results = {}
    results["index"] = run(repo, sys.executable, "stages/index.py", "--source", "big")
    results["full view"] = run(repo, sys.executable, "stages/prepare.py", "--dataset", "big_full")
    results["lungs view"] = run(repo, sys.executable, "stages/prepare.py", "--dataset", "big_lungs")
    total = sum(wall for wall, _ in results.values())
    print(f"{label}: " + ", ".join(f"{name} {wall:.1f} s (peak {mib:.0f} MiB)" for name, (wall, mib) in results.items())
          + f"; total {total:.1f} s", flush=True)
    # dvc add of the raw data inside the scratch repository (a copy, so the cache link is local).
    tracked = repo / "data" / raw.name
    tracked.parent.mkdir(exist_ok=True)
    (shutil.copytree if raw.is_dir() else shutil.copy)(raw, tracked)
    add = run(repo, sys.executable, "-m", "dvc", "add", "-q", str(tracked.relative_to(repo)))[0]
    status = [run(repo, sys.executable, "-m", "dvc", "status", "-q", f"data/{raw.name}.dvc")[0] for _ in range(3)]
    print(f"{label}: dvc add {add:.1f} s; dvc status {statistics.median(status):.2f} s (median of 3)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cxr-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the stand-in data for another run")
    parser.add_argument("--standin-only", action="store_true",
                        help="only write the stand-in folder and zip into --workdir (to try the README's steps)")
    args = parser.parse_args()
    raw = args.workdir / "COVID-19_Radiography_Dataset"
    archive = args.workdir / "COVID-19_Radiography_Dataset.zip"
    if not raw.exists():
        start = time.perf_counter()
        make_standin(raw, args.images)
        print(f"stand-in: {args.images} PNGs in {time.perf_counter() - start:.0f} s", flush=True)
    if not archive.exists():
        make_zip(raw, archive)
    if args.standin_only:
        print(f"wrote {raw} and {archive}")
        return
    files = sum(1 for _ in raw.rglob("*/images/*.png"))
    size = sum(path.stat().st_size for path in raw.rglob("*.png")) / 2**30
    print(f"{files} images ({size:.1f} GiB with masks), {os.cpu_count()} cores", flush=True)
    measure(args.workdir, raw, "folder")
    measure(args.workdir, archive, "zip")
    if not args.keep:
        shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
