"""What an explanation map says against the lung mask, image by image, and intervals over images.

All functions take one non-negative map and one boolean mask of the same (H, W) shape, at the model's input
size and in its frame. Known in the literature as:
- lung energy fraction: energy-based pointing game (Wang et al. 2020, Score-CAM), relevance mass
  accuracy (Arras et al. 2022); its lift divides by the lung's share of the image, so a uniform map scores 1;
- pointing game (Zhang et al. 2018): does the map's maximum fall inside the lungs.
"""

from __future__ import annotations

import numpy as np

from cxr.anatomy.lungs import ZONES, zone_masks

# Share of COVID-19 patients with findings in each zone on chest X-rays: Abougazia et al. 2021, Pulmonary
# Medicine, doi 10.1155/2021/4496488 (central involvement is not reported as one figure).
ABOUGAZIA_2021 = {"upper": 0.11, "middle": 0.48, "lower": 0.87, "peripheral": 0.70}


def has_zone_reference(class_slug: str) -> bool:
    """Abougazia et al. 2021 counted COVID-19 patients: their zone shares are a reference for that class only."""
    return class_slug.startswith("covid")


def lung_energy_fraction(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's mass inside the lungs; NaN for a map with no mass (it points nowhere)."""
    total = float(heatmap.sum())
    return float(heatmap[mask].sum()) / total if total > 0 else float("nan")


def lung_lift(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Lung energy fraction over the lungs' share of the image: 1 for a uniform map, >1 when it favours the lungs."""
    area = float(mask.mean())
    return lung_energy_fraction(heatmap, mask) / area if area > 0 else float("nan")


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """1.0 when the map's maximum lies in the lungs, else 0.0; NaN for a map with no mass.

    Where several pixels share the maximum (saturated maps), it counts as a hit when most of them do.
    """
    if not heatmap.sum() > 0:
        return float("nan")
    peak = heatmap >= heatmap.max()
    return float(mask[peak].mean() > 0.5)


def zone_shares(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Share of the map's mass in the two lungs per zone (upper + middle + lower = 1, central + peripheral = 1)."""
    # Summed in float64: float32 sums of a uniform map miss the zone's area share by a rounding step, and
    # zone_involvement compares the two with >=.
    heatmap = np.asarray(heatmap, dtype=np.float64)
    zones = zone_masks(mask)
    lungs = zones["central"] | zones["peripheral"]  # stray mask specks outside the two lungs are in no zone
    inside = float(heatmap[lungs].sum())
    if not inside > 0:
        return dict.fromkeys(ZONES, float("nan"))
    return {zone: float(heatmap[region].sum()) / inside for zone, region in zones.items()}


def zone_involvement(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """1.0 for each zone the map involves: one that holds at least its share of the lung area in map mass
    (the map is as dense there as over the lungs on average), the map's analogue of a zone with findings.
    NaN for a zone with no pixels (a lung too small to divide) or a map with no mass in the lungs."""
    shares = zone_shares(heatmap, mask)
    zones = zone_masks(mask)
    area = float((zones["central"] | zones["peripheral"]).sum())
    return {zone: float("nan") if np.isnan(shares[zone]) or not region.any() else float(shares[zone] >= region.sum() / area)
            for zone, region in zones.items()}
