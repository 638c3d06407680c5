"""Lesion measurements from the mask: the numbers behind "asymmetric, irregular, many colours".

These follow the dermoscopic ABCD rule's quantities, computed on the segmented lesion:
- ``area_fraction``: lesion pixels / image pixels;
- ``equivalent_diameter_px``: diameter of the disc of the same area;
- ``asymmetry``: for each principal axis, the area that does not overlap its mirror image about
  that axis, as a share of twice the lesion area (0 = perfectly symmetric, 1 = no overlap);
- ``border_irregularity``: perimeter² / (4π·area), 1 for a circle, larger for ragged borders;
- ``colours``: which of the six ABCD colours (white, red, light brown, dark brown, blue-grey,
  black) each cover at least 5 % of the lesion, by nearest reference colour in CIELAB. The
  reference colours are approximate *(ours)*, so this is an indication, not a clinical count.

Asymmetry and colours are computed by :mod:`dermfuse.criteria` (the ABCD rule's own module), so these
numbers and the ABCD panel's are the same numbers.

And one number about the explanation: ``lesion_focus``, the share of a heatmap's mass on the lesion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .criteria import colour_shares, counted_colours, mirror_non_overlap


@dataclass
class LesionMeasurements:
    area_fraction: float
    equivalent_diameter_px: float
    asymmetry_major_axis: float
    asymmetry_minor_axis: float
    border_irregularity: float
    colours: list[str]
    touches_border: bool

    def to_dict(self) -> dict:
        return asdict(self)


def measure_lesion(image: np.ndarray, mask: np.ndarray, colours: list[str] | None = None) -> LesionMeasurements | None:
    """Measurements of the lesion in ``mask`` (H, W bool) on ``image`` (H, W, 3 uint8); None if empty.
    ``colours``: the ABCD colours already counted by :func:`dermfuse.criteria.lesion_criteria` (else counted here)."""
    area = int(mask.sum())
    if area == 0:
        return None
    major, minor = mirror_non_overlap(mask)
    return LesionMeasurements(
        area_fraction=area / mask.size,
        equivalent_diameter_px=math.sqrt(4 * area / math.pi),
        asymmetry_major_axis=major,
        asymmetry_minor_axis=minor,
        border_irregularity=border_irregularity(mask),
        colours=counted_colours(colour_shares(image, mask)) if colours is None else list(colours),
        touches_border=bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()),
    )


def border_irregularity(mask: np.ndarray) -> float:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, closed=True) for c in contours)
    return float(perimeter**2 / (4 * math.pi * mask.sum()))


def lesion_focus(heat: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the heatmap's mass (H, W, ≥ 0) inside the lesion mask (H, W bool), in [0, 1].

    ``None`` when the map has no mass to share out (all zero): the explanation pipeline never shows
    such a map, and a share of nothing is undefined, not NaN in a report.
    """
    total = float(heat.sum())
    if not total > 0:
        return None
    return float(heat[mask].sum() / total)
