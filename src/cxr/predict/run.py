"""One trained classifier on new films, prepared exactly as its training data was.

A film goes through the same functions as the pipeline's: decode_image (as the index reads raw files),
make_view with the checkpoint's own preprocessing (as prepare stores a view), model_input and softmax (as
evaluate scores a test split). A lungs model gets its mask from the trained segmenter (film_mask, as the
cascade's prepare_segmented stage), and every mask is checked against anatomy (mask_checks). With a
segmenter at hand, full-view films get the same check, and their explanation maps a lung share.

A film the tool's own checks call implausible gets no class (it abstains, with the reason): a constant
image (no X-ray: the index skips it too) or a lung mask that fails the anatomical checks. Its probabilities
are kept apart, as unreliable; `abstain=False` classifies it anyway.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxr.data.views import MASKED_VIEWS, make_view
from cxr.io.images import decode_image
from cxr.io.pixels import UnreadableImage
from cxr.models.checkpoints import (
    PREDICT_META,
    CheckpointError,
    load_checkpoint,
    meta_problem,
)
from cxr.models.inference import mixed_precision, model_input

# Films larger than this are refused before decoding, as index.max_image_pixels does for a source.
MAX_IMAGE_PIXELS = 50_000_000


class PredictError(ValueError):
    """The model or segmenter cannot be used; the message says what to do."""


@dataclass
class Prediction:
    file: str
    probabilities: dict[str, float] | None  # None when abstained or not finite
    predicted: str | None  # None when abstained
    abstained: str | None = None  # why no class is given
    # An abstained film's probabilities: the model's output on a film it cannot be trusted with.
    unreliable_probabilities: dict[str, float] | None = None
    lungs: dict | None = None  # the segmenter's mask checks: plausible, reasons, area, ...
    explanation: dict | None = None  # cam_lung_energy, saliency_lung_energy, figure
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExplainSettings:
    method: str = "gradcam"
    min_grid: int = 7


@dataclass(frozen=True)
class Segmenter:
    net: torch.nn.Module
    image_size: int
    num_classes: int
    confidence: float

    @classmethod
    def load(cls, path: Path, confidence: float, device: torch.device) -> Segmenter:
        from cxr.segment.train import SegmenterError, load_segmenter

        try:
            net, summary = load_segmenter(path, device)
        except SegmenterError as err:
            raise PredictError(f"{err}; a lungs model needs it to cut the lungs out of a film (or fetch it: "
                               f"`dvc pull {path}`)") from None
        return cls(net, summary["image_size"], len(summary["names"]), confidence)


class Predictor:
    """A checkpoint ready to classify films one at a time, with its segmenter and explanation maps on demand.

    The segmenter in `segmenter_file` is loaded for a lungs model, which cannot do without it, and for a
    full-view model unless `segmenter_optional` and the file is not there (its masks are then only checked).
    `placed_for`: the dataset the checkpoint's place says it was trained on (where the pipeline keeps that
    dataset's models), refused when its own meta says otherwise.
    """

    def __init__(self, checkpoint: Path, device: torch.device, segmenter_file: Path | None = None,
                 confidence: float = 0.25, explain: ExplainSettings | None = None, segmenter_optional: bool = False,
                 abstain: bool = True, placed_for: str | None = None):
        try:
            self.model, self.meta = load_checkpoint(checkpoint, device)
        except CheckpointError as err:
            raise PredictError(f"{err}; or fetch it from the team's remote (`dvc pull {checkpoint}`)") from None
        problem = meta_problem(self.meta, PREDICT_META) or view_problem(self.meta["preprocessing"])
        if problem:
            raise PredictError(f"{checkpoint}: {problem}; retrain it (`dvc repro`) or fetch it again (`dvc pull {checkpoint}`)")
        if placed_for is not None and placed_for != self.meta["dataset"]:
            raise PredictError(f"{checkpoint} was trained on {self.meta['dataset']} ({self.meta['preprocessing']['view']} "
                               f"view) but lies in {Path(checkpoint).parent}/, where the pipeline keeps the models of "
                               f"{placed_for}: move it to where it keeps those of {self.meta['dataset']}, or out of "
                               f"the pipeline's model folders")
        if not all(torch.isfinite(tensor).all() for tensor in self.model.state_dict().values() if tensor.is_floating_point()):
            raise PredictError(f"{checkpoint} has non-finite weights (NaN or infinity): it cannot give a probability; "
                               f"retrain it (`dvc repro`) or fetch it again (`dvc pull {checkpoint}`)")
        self.device, self.explain, self.abstain = device, explain, abstain
        self.view = self.meta["preprocessing"]
        self.classes = list(self.meta["classes"])
        lungs_view = self.view["view"] in MASKED_VIEWS
        if lungs_view and segmenter_file is None:
            raise PredictError(f"{checkpoint} classifies films by their lung mask ({self.view['view']} view of "
                               f"{self.meta['dataset']}): it needs the lung segmenter to find the lungs of a film; give "
                               f"it with --segmenter PATH")
        self.segmenter = None
        if segmenter_file is not None and (lungs_view or not segmenter_optional or segmenter_file.is_file()):
            self.segmenter = Segmenter.load(segmenter_file, confidence, device)
        self.layer = None
        if explain is not None:
            from cxr.explain.layers import choose_target_layer

            self.layer = choose_target_layer(self.model, self.meta["image_size"], explain.min_grid)

    def view_of(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, dict | None]:
        """The stored form of a film (the model's view), its lung mask there, and the mask's anatomical checks."""
        if self.segmenter is None:
            image, _ = make_view(pixels, np.zeros(pixels.shape, dtype=bool), "full", self.view["image_size"], 0.0)
            return image, None, None
        from cxr.segment.films import film_mask
        from cxr.segment.scores import implausible_reasons, mask_checks

        s = self.segmenter
        mask = film_mask(s.net, pixels, s.image_size, s.confidence, s.num_classes, self.device)
        checks = mask_checks(mask, "full")
        lungs = {"plausible": bool(checks["plausible"]), "reasons": implausible_reasons(checks, "full"),
                 "regions": int(checks["components"]), "area_fraction": round(checks["area_fraction"], 4)}
        image, view_mask = make_view(pixels, mask, self.view["view"], self.view["image_size"], self.view["lung_margin"])
        return image, view_mask, lungs

    def predict(self, name: str, data: bytes, figure_dir: Path | None = None) -> Prediction:
        """Raises UnreadableImage for a file that is no usable X-ray."""
        pixels = decode_image(data, name, MAX_IMAGE_PIXELS).pixels
        doubts = []
        if pixels.min() == pixels.max():  # as the index's scan_entry, which leaves such images out of training
            doubts.append(f"constant image (every pixel {int(pixels.min())}): no X-ray to classify")
        image, mask, lungs = self.view_of(pixels)
        if lungs is not None and not lungs["plausible"]:
            doubts.append("implausible lung segmentation: " + "; ".join(lungs["reasons"]))
        raw = torch.tensor(image)[None, None].to(self.device)  # a copy: make_view's array is read-only
        inputs = model_input(raw, self.meta["image_size"], self.meta["mean"], self.meta["std"])
        precision = mixed_precision(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=precision, enabled=precision is not None):
            logits = self.model(inputs)
        probabilities = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
        best = int(probabilities.argmax())
        by_class = {c: float(p) for c, p in zip(self.classes, probabilities)}
        if not np.isfinite(probabilities).all():
            # No class can be read from NaN, whatever the caller asked for, and JSON has no NaN.
            prediction = Prediction(name, None, None, "the model gave non-finite probabilities", lungs=lungs,
                                    notes=doubts)
        elif doubts and self.abstain:
            prediction = Prediction(name, None, None, "; ".join(doubts), by_class, lungs)
        else:
            prediction = Prediction(name, by_class, self.classes[best], lungs=lungs, notes=doubts)
        if self.explain is not None:
            prediction.explanation = self._explain(name, inputs, best, mask, figure_dir, prediction)
        return prediction

    def _explain(self, name: str, inputs: torch.Tensor, best: int, mask: np.ndarray | None, figure_dir: Path | None,
                 prediction: Prediction) -> dict:
        from cxr.explain.maps import (
            class_activation_maps,
            masks_at,
            saliency_maps,
            shown_pixels,
        )
        from cxr.explain.scores import lung_energy_fraction

        cam = class_activation_maps(self.model, self.layer, inputs, [best], self.explain.method)[0]
        saliency = saliency_maps(self.model, inputs, [best])[0]
        if mask is not None:
            mask = masks_at(mask[None], self.meta["image_size"])[0]
        explanation = {"method": self.explain.method, "layer": self.layer.name}
        if mask is not None and mask.any():
            explanation |= {"cam_lung_energy": rounded(lung_energy_fraction(cam, mask)),
                            "saliency_lung_energy": rounded(lung_energy_fraction(saliency, mask))}
        if figure_dir is not None:
            from cxr.explain.figures import write_prediction_figure

            image = shown_pixels(inputs, self.meta["mean"], self.meta["std"])[0]
            path = figure_dir / (figure_stem(name) + ".png")
            # An abstained film's maps are of its most likely class, which the title must not pass off as a verdict.
            shown = self.classes[best]
            probability = (prediction.probabilities or prediction.unreliable_probabilities or {}).get(shown)
            verdict = shown if prediction.predicted else f"ABSTAIN (most likely {shown})"
            title = f"{Path(name).name}: {verdict}" + ("" if probability is None else f" {probability:.2f}")
            try:
                write_prediction_figure(path, image, cam, saliency, mask, title, self.explain.method)
                explanation["figure"] = str(path)
            except OSError as err:  # a full disk or a read-only folder costs the figure, not the prediction
                explanation["figure"] = None
                prediction.notes.append(f"figure not written ({err.strerror or err})")
        return explanation


def view_problem(view: dict) -> str | None:
    """Why a checkpoint's preprocessing cannot be redone by make_view (None when it can)."""
    if view.get("view") not in ("full", *MASKED_VIEWS) or not isinstance(view.get("image_size"), int):
        return f"its preprocessing has no known view and image size ({view!r})"
    if view["view"] in MASKED_VIEWS and not isinstance(view.get("lung_margin"), (int, float)):
        return f"its preprocessing has no lung margin for the {view['view']} view ({view!r})"
    return None


def rounded(value: float) -> float | None:
    """JSON has no NaN: a map with no mass (it points nowhere) has no lung share."""
    return round(value, 4) if np.isfinite(value) else None


def figure_stem(name: str) -> str:
    """A file name for a film's figure, readable and unique per input path: x.png and x.jpg, or `a b.png` and
    a_b.png, read alike once made safe, so a hash of the whole path tells them apart."""
    readable = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip("/"))[-120:]
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{readable}-{digest}"


__all__ = ["ExplainSettings", "Prediction", "PredictError", "Predictor", "Segmenter", "UnreadableImage"]
