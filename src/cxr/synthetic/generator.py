"""Seeded synthetic chest X-rays in the layout of the Kaggle "COVID-19 Radiography Database".

The real datasets cannot be downloaded offline, so the pipeline's default data is drawn here: PA
films with body outline, lungs, ribs, spine, heart and diaphragm, plus class-specific opacities that
live only inside the lung mask. Follow-up scans and planted near-duplicates reproduce two traps of
the real data (patient leakage, duplicates across splits). The third, shortcut learning, has its own
set: a twin written beside the clean one, the same films pixel for pixel except that a share of them
carry a class-correlated marker outside the lungs, so that a model trained on the twin can be compared
with one trained on the clean set. Films vary between patients and scans as much as real ones do
(positioning, build, exposure, collimation, ECG leads), so that a perceptual hash can tell a planted
near-duplicate from another patient, as it can on real data.

Geometry is drawn in normalised coordinates (u: image left -> right, v: top -> bottom, both in
[-1, 1]), so an Anatomy renders at any pixel size. The image's right side is the patient's left.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from cxr.io.files import atomic_dir
from cxr.io.pixels import difference_hash, hash_distance
from cxr.synthetic.params import overlapping_folders

CLASSES = ("COVID-19", "Pneumonia", "Normal")
# Planted near-duplicates stay within this many bits of their source's 256-bit dHash, the hash the prepare
# stage groups by; distinct patients stay more than twice as far apart, so a threshold fits in between.
MAX_DUPLICATE_DISTANCE = 8


@dataclass(frozen=True)
class Anatomy:
    """Per-patient geometry, shared by all scans of one patient. Lungs: index 0 = image left."""

    body_width: float  # half-width of the thorax soft tissue
    soft_tissue: float  # thickness of the soft tissue relative to an average build
    neck: float  # half-width of the neck
    shoulder: float  # height of the top of the shoulders
    arm: tuple[float, float]  # gap between chest wall and upper arm, half-width of the arm
    breast: tuple[float, float, float]  # density (0: none), radius and drop below the lung bases of breast shadows
    lung_top: float  # height of the apices
    lung_base: float  # height of the costophrenic angles
    lung_width: tuple[float, float]  # half-widths; the patient's left lung (image right) is narrower
    mediastinum: float  # half-width of the gap between the lungs
    dome: tuple[float, float]  # diaphragm dome rise; the right hemidiaphragm usually sits higher
    heart: tuple[float, float, float, float]  # centre u, centre v, radius u, radius v
    rib_spacing: float
    rib_phase: float
    vessel_angles: tuple[float, ...]  # directions of the main vessels fanning out of each hilum
    hilar_density: float  # benign variation: denser hila and vessel markings in some healthy lungs

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Anatomy:
        body_width, lung_top, lung_base = rng.uniform(0.78, 0.98), rng.uniform(-0.8, -0.66), rng.uniform(0.45, 0.64)
        # Lungs scale with the thorax; the heart takes room from the patient's left lung.
        left = body_width * rng.uniform(0.3, 0.35)
        return cls(
            body_width=body_width,
            soft_tissue=rng.uniform(0.8, 1.25),
            neck=rng.uniform(0.15, 0.24),
            shoulder=lung_top - rng.uniform(0.04, 0.2),
            arm=(rng.uniform(0.0, 0.2), rng.uniform(0.12, 0.22)),
            breast=(rng.uniform(0.05, 0.12) if rng.random() < 0.4 else 0.0, rng.uniform(0.24, 0.36),
                    rng.uniform(-0.05, 0.12)),
            lung_top=lung_top,
            lung_base=lung_base,
            lung_width=(left, left * rng.uniform(0.8, 0.9)),
            mediastinum=rng.uniform(0.07, 0.13),
            dome=(rng.uniform(0.13, 0.27), rng.uniform(0.09, 0.23)),
            heart=(rng.uniform(0.05, 0.16), lung_base - rng.uniform(0.22, 0.34),
                   rng.uniform(0.27, 0.39), rng.uniform(0.23, 0.32)),
            rib_spacing=rng.uniform(0.15, 0.18),
            rib_phase=rng.uniform(0.0, 1.0),
            vessel_angles=tuple(rng.uniform(0, 2 * np.pi, size=14).tolist()),
            hilar_density=rng.gamma(2.0, 0.5),
        )


def _ramp(signed: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-ness of a region whose signed distance is negative inside: 1 deep inside, 0 at the edge."""
    return np.clip(signed, -width, 0.0) * (-1 / width)


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru: float, rv: float,
             power: float = 2.0) -> np.ndarray:
    """Approximate signed distance to a superellipse (negative inside)."""
    x, y = np.abs((u - cu) / ru), np.abs((v - cv) / rv)
    radius = np.sqrt(x * x + y * y) if power == 2 else (x**power + y**power) ** (1 / power)
    return (radius - 1) * min(ru, rv)


def _resize(array: np.ndarray, size: int, resample: int = Image.Resampling.BILINEAR) -> np.ndarray:
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize((size, size), resample))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean noise smooth over ~size/cells pixels, at roughly unit standard deviation."""
    return _resize(rng.standard_normal((cells, cells), dtype=np.float32), size, Image.Resampling.BICUBIC)


def _lungs(u: np.ndarray, v: np.ndarray, a: Anatomy) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """-> (signed distance to each lung field, hilum of each lung)."""
    heart = _ellipse(u, v, *a.heart)
    height = a.lung_base - a.lung_top
    fields, hila = [], []
    for side, width, dome in ((-1, a.lung_width[0], a.dome[0]), (1, a.lung_width[1], a.dome[1])):
        centre = side * (a.mediastinum + 0.85 * width)
        base = a.lung_base - (0.04 if side < 0 else 0.0)
        # Lungs widen towards the base; the medial border follows the mediastinum, nearly straight.
        taper = 1 + 0.25 * (v - a.lung_top) / height
        shell = _ellipse(u / taper, v, centre / taper, a.lung_top + 0.62 * height, width, 0.62 * height, 2.4)
        medial = a.mediastinum - side * u
        diaphragm = v - (base - dome * np.clip(1 - ((u - centre) / (1.15 * width)) ** 2, 0, None))
        field = np.maximum(np.maximum(shell, medial), diaphragm)
        if side > 0:
            field = np.maximum(field, -heart - 0.05)  # the heart overlaps the medial lower left lung
        fields.append(field)
        hila.append((side * (a.mediastinum + 0.08), a.lung_top + 0.52 * height))
    return fields, hila


def _largest_component(region: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(region)
    if count <= 1:
        return region
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def _fan(u: np.ndarray, v: np.ndarray, hilum: tuple[float, float], angles: np.ndarray, spread: float) -> np.ndarray:
    """Streaks radiating from a hilum, thin in angle (vessels, air bronchograms)."""
    bins = 720
    grid = np.arange(bins + 1) * (2 * np.pi / bins) - np.pi
    gap = np.angle(np.exp(1j * (grid[:, None] - angles[None, :])))
    profile = np.exp(-(gap**2) / (2 * spread**2)).sum(axis=1).astype(np.float32)
    # A lookup table over the angle: the streak pattern is evaluated once per bin, not per pixel.
    index = ((np.arctan2(v - hilum[1], u - hilum[0]) + np.pi) * (bins / (2 * np.pi))).astype(np.intp)
    return profile[index]


def _anatomy_density(u: np.ndarray, v: np.ndarray, a: Anatomy, fields: list[np.ndarray],
                     hila: list[tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """X-ray attenuation of the healthy chest: ~0 for air outside the body, ~0.6 for soft tissue."""
    air = np.maximum(_ramp(fields[0], 0.015), _ramp(fields[1], 0.015))
    gap, half = a.arm
    shoulder_u = a.body_width + gap + half  # the shoulder joint, above the upper arm
    body = np.maximum.reduce([
        _ramp(_ellipse(u, v, 0.0, 0.35, a.body_width, 1.25, 3.0), 0.03),
        _ramp(_ellipse(u, v, 0.0, a.shoulder + 0.4, shoulder_u, 0.45, 2.5), 0.04),
        _ramp(np.abs(u) - a.neck, 0.02) * (v < a.shoulder + 0.2),
    ])
    thickness = np.sqrt(np.clip(1 - np.abs(u / a.body_width) ** 2.5, 0, 1))
    density = a.soft_tissue * body * (0.3 + 0.35 * thickness + 0.08 * np.clip(v, 0, 1)) - 0.48 * air * (0.95 - 0.08 * v)
    # Upper arms hang down and outwards from the shoulders, often partly out of the field.
    lateral, down = np.abs(u) - shoulder_u, v - a.shoulder - 0.1
    along, across = 0.9 * down + 0.44 * lateral, 0.9 * lateral - 0.44 * down
    arm = _ramp(_ellipse(across, along, 0.0, 0.6, half, 0.75), 0.03)
    humerus = _ramp(np.abs(across) - 0.3 * half, 0.03)
    humerus += _ramp(_ellipse(across, along, 0.0, 0.0, 0.6 * half, 0.12), 0.04)  # its head
    density = np.maximum(density, a.soft_tissue * arm * (0.25 + 0.3 * np.sqrt(np.clip(1 - (across / half) ** 2, 0, 1))))
    density += 0.12 * arm * np.clip(humerus, 0, 1)
    strength, radius, drop = a.breast
    if strength:
        for side, width in ((-1, a.lung_width[0]), (1, a.lung_width[1])):
            cu, cv = side * (a.mediastinum + 1.3 * width), a.lung_base + drop - 0.6 * radius
            # Breast shadows have a sharp lower edge and fade out upwards.
            shadow = _ramp(_ellipse(u, v, cu, cv, 1.2 * radius, radius), 0.3 * radius)
            density += strength * shadow * np.clip((v - cv) / radius + 0.8, 0, 1)
    density -= 0.15 * _ramp(np.abs(u) - 0.035, 0.01) * (v < a.lung_top + 0.3)  # trachea
    density += 0.12 * _ramp(_ellipse(u, v, *a.heart), 0.15)
    density += 0.06 * _ramp(np.abs(u) - a.mediastinum - 0.04, 0.06)  # mediastinum
    vertebrae = 0.8 + 0.2 * np.clip(np.cos(v * (2 * np.pi / 0.09)) * 2, -1, 1)
    density += 0.07 * _ramp(np.abs(u) - 0.07, 0.03) * vertebrae * body * _ramp(v - a.lung_base - 0.2, 0.3)
    # Posterior ribs rise from the spine then curve down laterally; anterior ribs run the other way.
    d = np.clip(np.abs(u) - 0.06, 0, None)
    cage = _ramp(_ellipse(u, v, 0.0, -0.05, a.body_width - 0.05, 0.8), 0.15) * _ramp(v - a.lung_base - 0.1, 0.15)
    phase = 2 * np.pi * a.rib_phase
    posterior = np.clip(np.cos((v + 0.2 * d - 1.1 * d * d) * (2 * np.pi / a.rib_spacing) + phase) - 0.25, 0, 1)
    anterior = np.clip(np.cos((v + 0.5 * d) * (2 * np.pi / (1.3 * a.rib_spacing)) + phase) - 0.5, 0, 1)
    density += cage * (0.13 * posterior * (0.4 + 0.6 * air) + 0.08 * anterior * _ramp(0.12 - d, 0.1))
    clavicle = _ramp(np.abs(v - (a.lung_top + 0.08 - 0.25 * (d - 0.1))) - 0.03, 0.02)
    density += 0.14 * clavicle * _ramp(0.08 - d, 0.04) * _ramp(d - a.body_width + 0.25, 0.05)
    if rng.random() < 0.8:
        # Gastric air bubble under the left hemidiaphragm, with a flat air-fluid level; varies between scans.
        ru = rng.uniform(0.06, 0.13)
        cu = a.mediastinum + a.lung_width[1] * rng.uniform(0.5, 1.2)
        cv = a.lung_base - a.dome[1] * rng.uniform(0.2, 0.8) + 0.04 + 0.7 * ru
        bubble = _ramp(_ellipse(u, v, cu, cv, ru, 0.7 * ru), 0.03) * (v < cv + 0.7 * ru * rng.uniform(-0.3, 0.5))
        density -= rng.uniform(0.1, 0.22) * bubble
    for i, (hu, hv) in enumerate(hila):
        r2 = (u - hu) ** 2 + (v - hv) ** 2
        vessel = _fan(u, v, (hu, hv), np.array(a.vessel_angles[i::2]), 0.05)
        density += air * (0.04 * (0.5 + 0.5 * a.hilar_density) * vessel * np.exp(-np.sqrt(r2) / 0.18)
                          + 0.06 * a.hilar_density * np.exp(r2 * (-1 / (2 * 0.07**2))))
    size = u.shape[0]
    texture = _smooth_noise(rng, size, max(8, size // 3)) - _smooth_noise(rng, size, max(4, size // 12))
    # Uneven soft tissue (folds, clothing, build) outside the lungs: real films differ this way even when
    # the patients' outlines match, and it never blurs the lung findings.
    folds = _smooth_noise(rng, size, 8)
    density += 0.08 * body * (1 - air) * folds
    # Mild detector blur: edges of analytic shapes are otherwise too crisp for a radiograph.
    return gaussian_filter(density + 0.015 * air * texture, 0.8 * size / 256)


def _lesion(rng: np.random.Generator, label: str, severity: float, u: np.ndarray, v: np.ndarray,
            a: Anatomy, hila: list[tuple[float, float]]) -> np.ndarray:
    """Extra density of the disease, before it is confined to the lungs."""
    height = a.lung_base - a.lung_top
    size = u.shape[0]
    if label == "COVID-19":
        # Ground glass: soft patches in both lungs, peripheral and mostly in the lower zones.
        haze = np.zeros_like(u)
        for i in range(6 + round(6 * severity)):
            side = 1 if i % 2 else -1
            cu = side * (a.mediastinum + 1.5 * a.lung_width[i % 2] * rng.uniform(0.6, 1.0))
            cv = a.lung_top + height * rng.beta(3.5, 1.3)
            sigma = rng.uniform(0.08, 0.14) * (0.8 + 0.5 * severity)
            haze += rng.uniform(0.6, 1.0) * np.exp(((u - cu) ** 2 + (v - cv) ** 2) * (-0.5 / sigma**2))
        mottle = 1 + 0.35 * _smooth_noise(rng, size, 12)
        return (0.2 + 0.25 * severity) * np.clip(haze, 0, 1.3) * mottle
    if label == "Pneumonia":
        # Lobar consolidation: one compact dense patch, in one lung four times out of five.
        lungs = [int(rng.integers(2))] if rng.random() < 0.8 else [0, 1]
        patch = np.zeros_like(u)
        for i, lung in enumerate(lungs):
            cu = (2 * lung - 1) * (a.mediastinum + rng.uniform(0.8, 1.5) * a.lung_width[lung])
            cv = a.lung_top + height * rng.uniform(0.3, 0.8)
            # A lobe is elongated and tilted; smooth noise roughens its border.
            radius = (0.25 + 0.2 * severity) * (0.6 if i else 1.0) * rng.uniform(0.7, 1.4, 2)
            angle = rng.uniform(0, math.pi)
            along = math.cos(angle) * (u - cu) + math.sin(angle) * (v - cv)
            across = math.cos(angle) * (v - cv) - math.sin(angle) * (u - cu)
            core = np.exp(-(along / radius[0]) ** 2 - (across / radius[1]) ** 2)
            patch += np.clip((core * (1 + 0.5 * _smooth_noise(rng, size, 6)) - 0.2) * 2, 0, 1)
        if rng.random() < 0.5:  # air bronchograms: patent airways show dark inside the consolidation
            patch *= 1 - 0.4 * np.clip(_fan(u, v, hila[lungs[0]], rng.uniform(-np.pi, np.pi, 5), 0.03), 0, 1)
        return (0.45 + 0.3 * severity) * patch
    return np.zeros_like(u)  # Normal


def _marker(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A laterality-tag-like shape in a corner that depends on the class: a shortcut to learn."""
    y, x = np.ogrid[:size, :size]
    x, y = (x + 0.5) / size, (y + 0.5) / size
    inset, side = rng.uniform(0.03, 0.06), rng.uniform(0.06, 0.08)
    if label == "COVID-19":  # top-left square
        return (x > inset) & (x < inset + side) & (y > inset) & (y < inset + side)
    if label == "Pneumonia":  # top-right disc
        return (x - (1 - inset - side / 2)) ** 2 + (y - (inset + side / 2)) ** 2 < (side / 2) ** 2
    return (x > inset) & (x < inset + 2 * side) & (y > 1 - inset - side / 2) & (y < 1 - inset)  # bottom-left bar


def _devices(rng: np.random.Generator, size: int, to_pixels) -> np.ndarray:
    """Density of ECG electrodes and their lead wires: pads with a metal snap, wires running off the film.

    They lie anywhere on the chest, across the lungs too, and never depend on the class.
    """
    layer = Image.new("F", (size, size))
    draw = ImageDraw.Draw(layer)
    pad, snap, wire = 0.025 * size, 0.008 * size, max(1, round(size / 180))
    for _ in range(rng.integers(2, 6)):
        start = np.array(to_pixels(rng.uniform(-0.8, 0.8), rng.uniform(-0.75, 0.65)))
        side = rng.integers(3)  # the wire leaves the film at the bottom, left or right edge
        along = rng.uniform(0.1, 0.9) * size
        end = np.array([(along, size + 5), (-5, along), (size + 5, along)][side])
        bend = (start + end) / 2 + rng.normal(0, 0.15 * size, 2)
        s = np.linspace(0, 1, 24)[:, None]
        curve = (1 - s) ** 2 * start + 2 * s * (1 - s) * bend + s**2 * end
        draw.line([tuple(point) for point in curve.tolist()], fill=0.25, width=wire, joint="curve")
        draw.ellipse((*(start - pad), *(start + pad)), fill=0.06)
        draw.ellipse((*(start - snap), *(start + snap)), fill=0.5)
    return gaussian_filter(np.asarray(layer), 0.5 * size / 256)


@dataclass(frozen=True)
class Exposure:
    """A rendered film before its last two steps, the class marker and the detector noise.

    Both steps are kept apart so that a film and its marked twin share everything else: developed with
    and without the marker, they differ at the marker's pixels only.
    """

    film: np.ndarray  # float (size, size), ~[0, 1]
    mask: np.ndarray  # bool (size, size) lung mask
    marker: np.ndarray  # bool (size, size): where the class marker goes, always outside the lungs
    noise: np.ndarray  # float (size, size)

    def develop(self, *, marked: bool) -> np.ndarray:
        """-> uint8 (size, size) image, with the class marker if `marked`."""
        film = np.where(self.marker, 0.97, self.film) if marked else self.film
        return np.round(np.clip(film + self.noise, 0, 1) * 255).astype(np.uint8)


def render_case(rng: np.random.Generator, label: str, size: int, *, anatomy: Anatomy | None = None,
                severity: float | None = None, shortcut: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic PA chest film -> (uint8 (size, size) image, bool (size, size) lung mask).

    The same rng state and anatomy give the same film outside the lungs for every label: the class
    only changes pixels inside the mask (and the marker, if `shortcut`). `severity` in [0, 1] scales
    the disease; None draws it from a Beta distribution, so that some sick cases are subtle.
    """
    exposure = expose(rng, label, size, anatomy=anatomy, severity=severity)
    return exposure.develop(marked=shortcut), exposure.mask


def expose(rng: np.random.Generator, label: str, size: int, *, anatomy: Anatomy | None = None,
           severity: float | None = None) -> Exposure:
    """The film render_case develops, with or without its marker; same arguments, same rng draws."""
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; expected one of {CLASSES}")
    # Independent streams, so that the class-specific draws never shift the anatomy, noise or marker.
    streams = (np.random.default_rng(seed) for seed in rng.integers(2**63, size=4))
    geometry_rng, lesion_rng, noise_rng, marker_rng = streams
    a = anatomy if anatomy is not None else Anatomy.sample(geometry_rng)
    # Per-film positioning: shift, zoom and a slight tilt, applied by warping the sampling grid. Real films
    # differ this much between patients and scans; the duplicate check relies on that spread.
    shift_u, shift_v = geometry_rng.uniform(-0.16, 0.16, 2)
    zoom, tilt = geometry_rng.uniform(0.88, 1.12), geometry_rng.uniform(-0.07, 0.07)
    cos, sin = math.cos(tilt), math.sin(tilt)
    # Everything below the noise is smooth, so it is drawn at half resolution and upsampled: 4x faster.
    work = (size + 1) // 2
    t = (np.arange(work, dtype=np.float32) + 0.5) * (2 / work) - 1
    x, y = (t[None, :] - shift_u) / zoom, (t[:, None] - shift_v) / zoom
    u, v = cos * x + sin * y, cos * y - sin * x

    fields, hila = _lungs(u, v, a)
    density = _anatomy_density(u, v, a, fields, hila, geometry_rng)
    if severity is None:
        severity = float(lesion_rng.beta(4.0, 1.2))
    lesion = _lesion(lesion_rng, label, severity, u, v, a, hila)

    fields = [_resize(field, size) for field in fields]
    mask = _largest_component(fields[0] < 0) | _largest_component(fields[1] < 0)
    inside = np.where(mask, np.maximum(_ramp(fields[0], 0.08), _ramp(fields[1], 0.08)), 0.0)
    density = _resize(density, size) + inside * _resize(lesion, size)
    if geometry_rng.random() < 0.3:
        def to_pixels(pu: float, pv: float) -> tuple[float, float]:
            px, py = zoom * (cos * pu - sin * pv) + shift_u, zoom * (sin * pu + cos * pv) + shift_v
            return (px + 1) * size / 2, (py + 1) * size / 2
        density += _devices(geometry_rng, size, to_pixels)

    # Film response: saturating, with per-film exposure, contrast and a heel-effect exposure gradient.
    gain, gamma = geometry_rng.uniform(0.6, 1.6), geometry_rng.uniform(0.75, 1.3)
    film = ((1 - np.exp(-gain * np.clip(density, 0, None))) / (1 - math.exp(-gain))) ** gamma
    position = (np.arange(size, dtype=np.float32) + 0.5) * (2 / size) - 1
    position = position[None, :] if geometry_rng.random() < 0.5 else position[:, None]
    film *= 1 + geometry_rng.uniform(-0.15, 0.15) * position
    film = geometry_rng.uniform(0.01, 0.1) + geometry_rng.uniform(0.75, 0.97) * film
    if geometry_rng.random() < 0.4:
        # Collimation: some edges of the film are shuttered, to black or left unexposed (white).
        tone = geometry_rng.uniform(0.0, 0.03) if geometry_rng.random() < 0.5 else geometry_rng.uniform(0.7, 0.88)
        top, bottom, left, right = (round(size * w) if geometry_rng.random() < 0.6 else 0
                                    for w in geometry_rng.uniform(0.02, 0.1, 4))
        border = np.ones((size, size), dtype=bool)
        border[top:size - bottom, left:size - right] = False
        # The lung mask must keep describing visible lung.
        film = np.where(border & ~mask, tone, film)
    noise = noise_rng.uniform(0.008, 0.02) * noise_rng.standard_normal(film.shape, dtype=np.float32)
    return Exposure(film, mask, _marker(label, size, marker_rng) & ~mask, noise)


def _near_duplicate(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same film exported again: a 1-3 grey-level brightness change plus faint noise, or stored at another size.

    A copy whose dHash is more than MAX_DUPLICATE_DISTANCE bits from its source's is redrawn: the planted
    duplicates must be findable by the duplicate check they exist to exercise.
    """
    source = difference_hash(image)
    for _ in range(20):
        if rng.random() < 0.5:
            shifted = image + rng.choice([-3, -2, -1, 1, 2, 3]) + rng.normal(0, 0.8, image.shape)
            copy, copy_mask = np.round(np.clip(shifted, 0, 255)).astype(np.uint8), mask
        else:
            side = round(image.shape[0] * rng.choice([0.75, 0.875, 0.9375, 1.125, 1.25]))
            copy = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))
            resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side), Image.Resampling.NEAREST)
            copy_mask = np.asarray(resized) > 0
        if hash_distance(difference_hash(copy), source) <= MAX_DUPLICATE_DISTANCE:
            return copy, copy_mask
    return image.copy(), mask  # never reached in practice: nearly every draw passes


def _save(folder: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    # Noisy films barely compress better at higher levels, which cost twice the time.
    Image.fromarray(image).save(folder / "images" / name, compress_level=1)
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / name, compress_level=1)


def write_dataset(out_dir: Path, *, seed: int, images_per_class: int, image_size: int, shortcut: float,
                  shortcut_dir: Path | None = None, follow_up_fraction: float, duplicate_fraction: float,
                  progress: bool = True) -> dict:
    """Writes out_dir/<class>/{images,masks}/<name>.png, replacing out_dir as a whole; returns a summary.

    The films at out_dir never carry the class marker. With shortcut_dir, their twin is written there
    too (replaced as a whole as well): the same names, masks and pixels, except that with probability
    `shortcut` a film carries its class's marker outside the lungs; summary["shortcut_markers"] counts
    the twin's marked files. Without a twin, the clean films are the same bytes whatever `shortcut`.
    images_per_class counts scans (first scans plus follow-ups); planted near-duplicates come on top.
    Every scan draws from its own generator, keyed by (seed, patient, scan), so a file's pixels do
    not depend on how many others are generated or in which order.
    """
    if images_per_class < 1 or image_size < 32:
        raise ValueError("images_per_class must be >= 1 and image_size >= 32")
    for name, value in (("shortcut", shortcut), ("follow_up_fraction", follow_up_fraction),
                        ("duplicate_fraction", duplicate_fraction)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if shortcut_dir is not None and overlapping_folders(out_dir, shortcut_dir):
        raise ValueError(f"shortcut_dir {str(shortcut_dir)!r} must differ from out_dir {str(out_dir)!r}, and neither "
                         f"may contain the other: each is replaced whole, so the twin would overwrite the clean set")
    patients_per_class = round(images_per_class / (1 + follow_up_fraction))
    n_duplicates = round(duplicate_fraction * images_per_class)
    # Patient ids and duplicate names are shuffled across classes so that neither encodes the class.
    patient_ids = np.random.default_rng([seed, 0]).permutation(patients_per_class * len(CLASSES)) + 1
    duplicate_ids = np.random.default_rng([seed, 1]).permutation(n_duplicates * len(CLASSES)) + 1
    jobs = []  # (class, patient, scan, duplicate id or 0)
    for c, cls in enumerate(CLASSES):
        patients = sorted(patient_ids[c * patients_per_class:(c + 1) * patients_per_class].tolist())
        choose = np.random.default_rng([seed, 2, c])
        followed = choose.choice(patients, images_per_class - patients_per_class, replace=False).tolist()
        scans = [(p, 1) for p in patients] + [(p, 2) for p in sorted(followed)]
        copied = dict(zip(choose.choice(len(scans), n_duplicates, replace=False).tolist(),
                          duplicate_ids[c * n_duplicates:(c + 1) * n_duplicates].tolist()))
        jobs += [(cls, p, s, copied.get(i, 0)) for i, (p, s) in enumerate(scans)]
    # disable=None: a bar on terminals only, not in logs.
    jobs = tqdm(jobs, desc="synthetic X-rays", unit="image", disable=None if progress else True)

    counts, markers = dict.fromkeys(CLASSES, 0), 0
    writing_twin = atomic_dir(Path(shortcut_dir)) if shortcut_dir is not None else nullcontext()
    with atomic_dir(Path(out_dir)) as clean, writing_twin as twin:
        folders = [clean] if twin is None else [clean, twin]
        for folder in folders:
            for cls in CLASSES:
                (folder / cls / "images").mkdir(parents=True)
                (folder / cls / "masks").mkdir()
        for cls, patient, scan, duplicate in jobs:
            anatomy = Anatomy.sample(np.random.default_rng([seed, 3, patient]))
            rng = np.random.default_rng([seed, 4, patient, scan])
            # Always drawn, and first: the film drawn after it is then the same whatever `shortcut` and the twin.
            marked = bool(rng.random() < shortcut) and twin is not None
            exposure = expose(rng, cls, image_size, anatomy=anatomy)
            clean_image = exposure.develop(marked=False)
            images = [clean_image, exposure.develop(marked=True) if marked else clean_image]
            for folder, image in zip(folders, images):
                _save(folder / cls, f"p{patient:05d}_s{scan}.png", image, exposure.mask)
                if duplicate:
                    # Seeded alike in both sets: each set's copy is its own film, exported the same way.
                    copy, copy_mask = _near_duplicate(np.random.default_rng([seed, 5, duplicate]), image, exposure.mask)
                    _save(folder / cls, f"x{duplicate:05d}.png", copy, copy_mask)
            files = 2 if duplicate else 1
            counts[cls] += files
            markers += files * marked
    return {
        "counts": counts,
        "patients": patients_per_class * len(CLASSES),
        "follow_ups": (images_per_class - patients_per_class) * len(CLASSES),
        "duplicates": n_duplicates * len(CLASSES),
        "shortcut_markers": markers,
    }


# Kaggle COVID-19 Radiography Database folder -> the class whose findings its films show.
RADIOGRAPHY_FOLDERS = {"COVID": "COVID-19", "Viral Pneumonia": "Pneumonia", "Normal": "Normal", "Lung_Opacity": "Pneumonia"}


def write_radiography_zip(path: Path, *, seed: int, images_per_class: int, image_size: int, mask_size: int,
                          gamma: float = 1.0, root: str = "COVID-19_Radiography_Dataset", progress: bool = True) -> dict:
    """A second, independent hospital exactly as Kaggle ships the Radiography Database: one zip archive.

    `<root>/<folder>/images/<folder>-<n>.png` at image_size with `<root>/<folder>/masks/<folder>-<n>.png`
    at mask_size (Kaggle's 256-px masks of 299-px films), Lung_Opacity included (which our classes
    drop). Other patients than write_dataset's (its own seed), one scan each, and the hospital's own
    image processing: a tone curve `gamma` applied to every film (1: none), the kind of difference
    between sites that costs real classifiers accuracy. Members carry a fixed date, so the same params
    give the same bytes.
    """
    import io
    import zipfile

    from cxr.io.files import atomic_path

    counts = {}
    tone = np.round(255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)
    jobs = [(folder, n) for folder in RADIOGRAPHY_FOLDERS for n in range(1, images_per_class + 1)]
    with atomic_path(Path(path)) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for folder, n in tqdm(jobs, desc="synthetic Radiography Database", unit="image", disable=None if progress else True):
            index = list(RADIOGRAPHY_FOLDERS).index(folder)
            rng = np.random.default_rng([seed, 6, index, n])
            image, mask = render_case(rng, RADIOGRAPHY_FOLDERS[folder], image_size,
                                      anatomy=Anatomy.sample(np.random.default_rng([seed, 7, index, n])))
            image = tone[image]
            mask_pixels = Image.fromarray(mask.astype(np.uint8) * 255).resize((mask_size, mask_size), Image.Resampling.NEAREST)
            for kind, picture in (("images", Image.fromarray(image)), ("masks", mask_pixels)):
                buffer = io.BytesIO()
                picture.save(buffer, format="PNG", compress_level=1)
                member = zipfile.ZipInfo(f"{root}/{folder}/{kind}/{folder}-{n}.png", date_time=(1980, 1, 1, 0, 0, 0))
                archive.writestr(member, buffer.getvalue())
            counts[folder] = n
    return {"counts": counts}
