"""Latency of `cxr predict` per image, per architecture at the study's input size (not a test: timings depend
on the machine).

    python benchmarks/predict_latency.py                  # CPU
    python benchmarks/predict_latency.py --device cuda    # a GPU, when there is one

Each architecture is built untrained (the weights do not change the time) at 224 px (InceptionV3 299),
saved as a checkpoint of this pipeline, and loaded through `cxr.predict.run.Predictor`, as `cxr predict`
does. One film is predicted again and again from its PNG bytes: decode, the full view, model input, forward
pass and softmax; then followed by the Grad-CAM of the predicted class (the view made again, as a Grad-CAM-only
caller would); then with --explain's maps (Grad-CAM and saliency, without writing the figure). With a trained segmenter in models/segment/, also the lung mask a lungs model needs first.
Medians of --repeats after two warm-up runs; prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from benchmark import seconds  # noqa: E402  (benchmarks/benchmark.py, beside this script)

from cxr.explain.maps import class_activation_maps  # noqa: E402
from cxr.io.images import decode_image  # noqa: E402
from cxr.models.checkpoints import save_checkpoint  # noqa: E402
from cxr.models.inference import model_input  # noqa: E402
from cxr.models.registry import STUDY_ARCHS, build_model  # noqa: E402
from cxr.params import resolve_device  # noqa: E402
from cxr.paths import PIPELINE_FILE, stage_path  # noqa: E402
from cxr.predict.run import ExplainSettings, Predictor, Segmenter  # noqa: E402

STUDY_SIZES = {"inception_v3": 299}  # 224 px for every other architecture
FILM_SIZE = 1024  # a film as large as the public collections' larger ones


def film_png() -> bytes:
    """A grey film with two darker lung fields: enough structure for the decoder and the segmenter."""
    y, x = np.mgrid[0:FILM_SIZE, 0:FILM_SIZE] / FILM_SIZE
    lungs = (((x - 0.33) / 0.14) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1) | (((x - 0.67) / 0.14) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1)
    pixels = np.where(lungs, 60, 170) + np.random.default_rng(0).normal(0, 12, (FILM_SIZE, FILM_SIZE))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def median_ms(run, device: torch.device, repeats: int) -> float:
    for _ in range(2):  # warm-up: oneDNN and cuDNN choose their kernels on the first calls
        run()
    return seconds(run, device, repeats) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = film_png()
    name = "film.png"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device: {device} ({where}), torch {torch.__version__}, film {FILM_SIZE}x{FILM_SIZE} PNG ({len(data) // 1024} KiB)\n")
    print("| architecture | input | predict, ms/image | with Grad-CAM | with Grad-CAM and saliency (`--explain` without its figure) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for arch in STUDY_ARCHS:
            size = STUDY_SIZES.get(arch, 224)
            torch.manual_seed(0)
            model = build_model(arch, 3, size)
            checkpoint = Path(folder) / f"{arch}.pt"
            save_checkpoint(checkpoint, model, {
                "model": arch, "dataset": "full", "arch": arch, "classes": ["COVID-19", "Pneumonia", "Normal"],
                "image_size": size, "mean": [0.5] * 3, "std": [0.25] * 3,
                "preprocessing": {"view": "full", "image_size": size, "lung_margin": 0.05}})
            plain = Predictor(checkpoint, device)
            explaining = Predictor(checkpoint, device, explain=ExplainSettings())
            predict = median_ms(lambda: plain.predict(name, data), device, args.repeats)
            explained = median_ms(lambda: explaining.predict(name, data), device, args.repeats)

            def with_cam() -> None:
                """The prediction, then the Grad-CAM of its class on the same input (no saliency)."""
                prediction = plain.predict(name, data)
                image, _, _ = plain.view_of(decode_image(data, name).pixels)
                inputs = model_input(torch.tensor(image)[None, None].to(device), size, [0.5] * 3, [0.25] * 3)
                class_activation_maps(explaining.model, explaining.layer, inputs, [plain.classes.index(prediction.predicted)])

            cam = median_ms(with_cam, device, args.repeats)
            print(f"| {arch} | {size} px | {predict:.0f} | {cam:.0f} | {explained:.0f} |", flush=True)
    trained_segmenter = REPO / stage_path("segment_train", "--checkpoint", pipeline=REPO / PIPELINE_FILE)
    if trained_segmenter.is_file():
        from cxr.segment.films import film_mask

        segmenter = Segmenter.load(trained_segmenter, 0.25, device)
        pixels = np.asarray(Image.open(io.BytesIO(data)))
        mask = median_ms(lambda: film_mask(segmenter.net, pixels, segmenter.image_size, segmenter.confidence,
                                           segmenter.num_classes, device), device, args.repeats)
        print(f"\nlung mask of the film (the trained segmenter at {segmenter.image_size} px, before a lungs model): {mask:.0f} ms")


if __name__ == "__main__":
    main()
