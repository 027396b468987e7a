"""Time per image of the explain stage, per architecture (not a test: timings depend on the machine).

    python benchmarks/explain_speed.py                 # after `dvc repro`: the trained models, full dataset
    python benchmarks/explain_speed.py --dataset lungs --device cuda

For each model in params.yaml: the whole explain_split (layer choice, Grad-CAM of the predicted and, where
wrong, the true class, saliency, ROAD, scores) on the stage's own selection of test images, then each map
alone on the same images, medians of --repeats runs. Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from benchmark import seconds  # noqa: E402  (benchmarks/benchmark.py, beside this script)

from cxr.explain.layers import choose_target_layer  # noqa: E402
from cxr.explain.maps import class_activation_maps, road_scores, saliency_maps  # noqa: E402
from cxr.explain.params import ExplainParams  # noqa: E402
from cxr.explain.run import explain_split, read_predictions, select_images  # noqa: E402
from cxr.io.arrays import SplitArrays, split_dir  # noqa: E402
from cxr.models.checkpoints import load_checkpoint  # noqa: E402
from cxr.models.inference import model_input  # noqa: E402
from cxr.params import Names, load_params, resolve_device  # noqa: E402
from cxr.paths import PIPELINE_FILE, stage_path  # noqa: E402


def explain_input(option: str, **item: str) -> Path:
    """What this checkout's explain stage of `item` (dataset=, model=) reads through `option`, from its dvc.yaml."""
    return REPO / stage_path("explain", option, pipeline=REPO / PIPELINE_FILE, **item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="full")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = load_params({"explain": ExplainParams, "models": Names}, REPO / "params.yaml")
    explain: ExplainParams = params["explain"]
    device = resolve_device(args.device)
    test = SplitArrays.load(split_dir(explain_input("--data", dataset=args.dataset), "test"))
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"dataset {args.dataset}, method {explain.method}, saliency {explain.saliency}, ROAD at {explain.road_percentiles}\n")
    print("| model | input | layer (grid) | images | explain stage s/image | Grad-CAM | saliency | SmoothGrad (x%d) | ROAD |"
          % explain.smoothgrad_samples)
    print("|---|---|---|---|---|---|---|---|---|")
    for name in params["models"]:
        model, meta = load_checkpoint(explain_input("--checkpoint", dataset=args.dataset, model=name), device)
        scored = explain_input("--predictions", dataset=args.dataset, model=name)
        predictions, probabilities = read_predictions(scored, test.names, meta["classes"])
        whole = seconds(lambda: explain_split(model, meta, test, predictions, probabilities, explain, device,
                                              resamples=1000, confidence=0.95, progress=False), device, args.repeats)
        indices, _ = select_images(test.names, test.labels, predictions, probabilities, len(meta["classes"]),
                                   explain.images_per_class, explain.max_misclassified, explain.seed)
        raw = torch.from_numpy(test.images[indices])[:, None].to(device)
        inputs = model_input(raw, meta["image_size"], meta["mean"], meta["std"])
        classes = predictions[indices]
        layer = choose_target_layer(model, meta["image_size"], explain.min_grid)
        maps = class_activation_maps(model, layer, inputs, classes, explain.method)
        parts = {
            "cam": lambda: class_activation_maps(model, layer, inputs, classes, explain.method),
            "saliency": lambda: saliency_maps(model, inputs, classes),
            "smoothgrad": lambda: saliency_maps(model, inputs, classes, samples=explain.smoothgrad_samples,
                                                noise=explain.smoothgrad_noise),
            "road": lambda: road_scores(model, inputs, maps, classes, explain.road_percentiles),
        }
        per_image = {part: seconds(run, device, args.repeats) / len(indices) for part, run in parts.items()}
        print(f"| {name} | {meta['image_size']} px | {layer.name} ({layer.grid[0]}x{layer.grid[1]}) | {len(indices)} | "
              f"{whole / len(indices):.3f} | {per_image['cam']:.3f} | {per_image['saliency']:.3f} | "
              f"{per_image['smoothgrad']:.3f} | {per_image['road']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
