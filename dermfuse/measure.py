"""Lesion measurements from the mask: the numbers behind "asymmetric, irregular, many colours".

These follow the dermoscopic ABCD rule's quantities, computed on the segmented lesion:
- ``area_fraction``: lesion pixels / image pixels;
- ``equivalent_diameter_px``: diameter of the disc of the same area;
- ``asymmetry``: for each principal axis, the area that does not overlap its mirror image about
  that axis, as a share of twice the lesion area (0 = perfectly symmetric, 1 = no overlap);
- ``border_irregularity``: perimeter² / (4π·area), 1 for a circle, larger for ragged borders;
- ``colours``: how many of the six ABCD colours (white, red, light brown, dark brown, blue-grey,
  black) each cover at least 5 % of the lesion, by nearest reference colour in CIELAB. The
  reference colours are approximate *(ours)*, so this is an indication, not a clinical count.

And one number about the explanation: ``lesion_focus``, the share of a heatmap's mass on the lesion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

ABCD_COLOURS_RGB = {
    "white": (235, 230, 225),
    "red": (190, 60, 60),
    "light brown": (180, 120, 80),
    "dark brown": (95, 60, 40),
    "blue-grey": (100, 115, 140),
    "black": (30, 25, 25),
}
MIN_COLOUR_SHARE = 0.05
MAX_COLOUR_PIXELS = 50_000  # a regular subsample is plenty for 5 % shares


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


def measure_lesion(image: np.ndarray, mask: np.ndarray) -> LesionMeasurements | None:
    """Measurements of the lesion in ``mask`` (H, W bool) on ``image`` (H, W, 3 uint8); None if empty."""
    area = int(mask.sum())
    if area == 0:
        return None
    major, minor = principal_axis_asymmetry(mask)
    return LesionMeasurements(
        area_fraction=area / mask.size,
        equivalent_diameter_px=math.sqrt(4 * area / math.pi),
        asymmetry_major_axis=major,
        asymmetry_minor_axis=minor,
        border_irregularity=border_irregularity(mask),
        colours=lesion_colours(image, mask),
        touches_border=bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()),
    )


def principal_axis_asymmetry(mask: np.ndarray) -> tuple[float, float]:
    """Non-overlap with the mirror image about the major and the minor principal axis."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    covariance = np.cov(np.stack([xs - cx, ys - cy]))
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    major = eigenvectors[:, np.argmax(eigenvalues)]
    angle = math.degrees(math.atan2(major[1], major[0]))
    # Rotate about the centroid into a canvas centred on it, major axis horizontal.
    radius = int(math.ceil(np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2).max())) + 2
    side = 2 * radius + 1
    rotation = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    rotation[:, 2] += (radius - cx, radius - cy)
    aligned = cv2.warpAffine(mask.astype(np.uint8), rotation, (side, side), flags=cv2.INTER_NEAREST) > 0
    total = 2 * aligned.sum()
    about_major = (aligned ^ aligned[::-1, :]).sum() / total  # mirror across the horizontal (major) axis
    about_minor = (aligned ^ aligned[:, ::-1]).sum() / total
    return float(about_major), float(about_minor)


def border_irregularity(mask: np.ndarray) -> float:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, closed=True) for c in contours)
    return float(perimeter**2 / (4 * math.pi * mask.sum()))


def lesion_colours(image: np.ndarray, mask: np.ndarray) -> list[str]:
    names = list(ABCD_COLOURS_RGB)
    reference = cv2.cvtColor(np.array([list(ABCD_COLOURS_RGB.values())], np.uint8), cv2.COLOR_RGB2LAB)[0].astype(np.float32)
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[mask].astype(np.float32)  # (N, 3)
    pixels = pixels[:: max(1, len(pixels) // MAX_COLOUR_PIXELS)]
    nearest = np.argmin(((pixels[:, None, :] - reference[None]) ** 2).sum(-1), axis=1)
    shares = np.bincount(nearest, minlength=len(names)) / len(pixels)
    return [name for name, share in zip(names, shares) if share >= MIN_COLOUR_SHARE]


def lesion_focus(heat: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the heatmap's mass (H, W, ≥ 0) inside the lesion mask (H, W bool), in [0, 1].

    ``None`` when the map has no mass to share out (all zero): the explanation pipeline never shows
    such a map, and a share of nothing is undefined, not NaN in a report.
    """
    total = float(heat.sum())
    if not total > 0:
        return None
    return float(heat[mask].sum() / total)
