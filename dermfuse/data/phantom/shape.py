"""Lesion outlines and the canvas the dermoscopic structures are painted on.

An outline is a star-shaped polar curve ``r(θ) = R·(1 + elongation·cos 2θ + asymmetry·(low orders)
+ irregularity·(high orders))``: asymmetry breaks mirror symmetry, irregularity makes the border
ragged. The mask is exactly ``{pixels with ρ ≤ 1}`` where ``ρ = distance to centre / r(θ)``, so it is
pixel-exact by construction, one connected piece (star-shaped), and every structure painted on the
lesion is clipped to it.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

from dermfuse.data.phantom.paint import blend, pixel_grid
from dermfuse.data.phantom.skin import SAFE_RADIUS, px

_ANGLES = np.linspace(-np.pi, np.pi, 256, endpoint=False)


@dataclass(frozen=True)
class ShapeParams:
    """How a lesion outline deviates from a circle (all ≥ 0; 0 is a perfect circle)."""

    area_fraction: float
    asymmetry: float
    irregularity: float
    elongation: float

    def mix(self, other: "ShapeParams", weight: float) -> "ShapeParams":
        """Interpolate toward ``other`` (``weight`` 0 → self, 1 → other)."""
        return ShapeParams(*(a + (b - a) * weight for a, b in zip(astuple(self), astuple(other))))


@dataclass
class Lesion:
    """A lesion being painted: the image, its exact mask and the polar coordinates inside it."""

    img: np.ndarray  # (H, W, 3) float32 RGB, painted in place
    mask: np.ndarray  # (H, W) bool, the lesion as drawn
    inside: np.ndarray  # (H, W) float32 0/1 copy of mask, for alphas
    rho: np.ndarray  # (H, W) float32: 0 at the centre, 1 on the border, > 1 outside
    angle: np.ndarray  # (H, W) float32 polar angle around the centre
    centre: np.ndarray  # (2,) x, y in pixels
    radii: np.ndarray  # (256,) border radius in pixels at _ANGLES
    extent: float  # largest distance of the border from the image centre, pixels
    skin: np.ndarray  # (3,) base skin colour
    rng: np.random.Generator
    colour_jitter: float = 0.02  # std of per-structure colour noise; grows with difficulty

    @property
    def size(self) -> int:
        return self.img.shape[0]

    @property
    def mean_radius(self) -> float:
        return float(np.sqrt(np.mean(self.radii**2)))

    def px(self, value: float, minimum: float = 1.0) -> float:
        """A length given at 256×256, scaled to this image."""
        return px(value, self.size, minimum)

    def point(self, rho, theta) -> np.ndarray:
        """Pixel (x, y) of polar coordinates (ρ, θ) inside the lesion; broadcasts to (..., 2)."""
        rho, theta = np.asarray(rho, np.float64), np.asarray(theta, np.float64)
        r = rho * self.border_radius(theta)
        return self.centre + np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1)

    def border_radius(self, theta) -> np.ndarray:
        return np.interp(np.asarray(theta), _ANGLES, self.radii, period=2 * np.pi)

    def paint(self, colour, alpha: np.ndarray) -> None:
        """Blend ``colour`` (RGB or field) into the image with ``alpha``, clipped to the lesion."""
        blend(self.img, colour, alpha * self.inside)


def outline_radii(rng: np.random.Generator, shape: ShapeParams) -> np.ndarray:
    """Relative border radius at _ANGLES (mean ≈ 1, ≥ 0.45)."""
    t = _ANGLES
    r = 1.0 + shape.elongation * np.cos(2 * (t - rng.uniform(0, np.pi)))
    for k in (1, 2, 3):
        r += shape.asymmetry * rng.uniform(0.4, 1.0) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    for k in range(4, 25):
        r += shape.irregularity * rng.normal() / np.sqrt(k - 3) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    return np.maximum(r, 0.45)


def new_lesion(img: np.ndarray, skin: np.ndarray, shape: ShapeParams, rng: np.random.Generator) -> Lesion:
    """Place a lesion of the given shape on ``img``: area as asked (shrunk if it cannot fit the
    safe disc), centre jittered so it stays within ``SAFE_RADIUS`` of the image centre."""
    size = img.shape[0]
    rel = outline_radii(rng, shape)
    scale = np.sqrt(shape.area_fraction * size * size / (np.pi * np.mean(rel**2)))
    limit = SAFE_RADIUS * size
    scale = min(scale, 0.97 * limit / rel.max())
    slack = limit - scale * rel.max()
    direction = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(0, min(slack, 0.12 * size)) * np.array([np.cos(direction), np.sin(direction)])
    centre = np.array([(size - 1) / 2.0, (size - 1) / 2.0]) + offset
    radii = scale * rel

    yy, xx = pixel_grid(size)
    dx, dy = xx - np.float32(centre[0]), yy - np.float32(centre[1])
    angle = np.arctan2(dy, dx)
    border = np.interp(angle, _ANGLES, radii, period=2 * np.pi).astype(np.float32)
    rho = np.sqrt(dx * dx + dy * dy) / border
    mask = rho <= 1.0
    border_xy = centre + radii[:, None] * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)
    extent = float(np.max(np.hypot(*(border_xy - (size - 1) / 2.0).T)))
    return Lesion(img, mask, mask.astype(np.float32), rho, angle, centre, radii, extent, skin, rng)
