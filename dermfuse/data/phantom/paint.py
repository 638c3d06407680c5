"""Vectorised painting primitives the phantom generator is built from (numpy + OpenCV only).

Images are float32 RGB in [0, 1], shape (H, W, 3), painted in place; alphas are float32 (H, W).
Everything is drawn at the target size (no supersampling) so one 256×256 phantom costs milliseconds.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

Colour = tuple[float, float, float]

# cv2 drawing calls take integer points; with ``shift=SHIFT`` they are read as fixed-point with 4
# fractional bits, so curves and dots land at sub-pixel positions (smoother at small sizes).
SHIFT = 4


def fixed(points) -> np.ndarray:
    """Float pixel coordinates → int32 fixed-point coordinates for cv2 calls with ``shift=SHIFT``."""
    return np.round(np.asarray(points, np.float64) * (1 << SHIFT)).astype(np.int32)


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``(yy, xx)`` float32 pixel coordinates of a size×size image."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def value_noise(rng: np.random.Generator, size: int, cells: float, octaves: int = 1) -> np.ndarray:
    """Smooth random field, about zero mean and unit std: bicubic-upsampled Gaussian lattices.

    ``cells`` is the number of lattice cells across the image (feature scale ≈ size / cells);
    each further octave doubles the cells and halves the amplitude.
    """
    total = np.zeros((size, size), np.float32)
    amplitude = 1.0
    for _ in range(octaves):
        n = max(2, int(round(cells)))
        lattice = rng.standard_normal((n + 1, n + 1)).astype(np.float32)
        total += amplitude * cv2.resize(lattice, (size, size), interpolation=cv2.INTER_CUBIC)
        cells *= 2
        amplitude *= 0.5
    total -= total.mean()
    total /= total.std() + 1e-6
    return total


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (either order), float32."""
    t = np.clip((x - np.float32(edge0)) / np.float32(edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def blend(img: np.ndarray, colour, alpha: np.ndarray) -> None:
    """``img ← img + (colour − img)·alpha`` in place; ``colour`` is an RGB triple or an (H, W, 3) field."""
    img += (np.asarray(colour, np.float32) - img) * alpha[..., None]


def multiply(img: np.ndarray, factor, alpha: np.ndarray) -> None:
    """Darken/tint in place like a transparent pigment: ``img ← img·(1 + (factor − 1)·alpha)``."""
    img *= 1.0 + (np.asarray(factor, np.float32) - 1.0) * alpha[..., None]


def jitter_colour(rng: np.random.Generator, colour, amount: float) -> np.ndarray:
    """An RGB colour moved by Gaussian noise of std ``amount`` per channel, clipped to [0, 1]."""
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0.0, amount, 3).astype(np.float32), 0.0, 1.0)


def new_layer(size: int) -> np.ndarray:
    """A blank uint8 (H, W) layer for cv2 drawing; divide by 255 to use it as an alpha."""
    return np.zeros((size, size), np.uint8)


def layer_alpha(layer: np.ndarray, blur_sigma: float = 0.0) -> np.ndarray:
    """uint8 drawing layer → float32 alpha in [0, 1], optionally Gaussian-softened."""
    alpha = layer.astype(np.float32) * np.float32(1.0 / 255.0)
    if blur_sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur_sigma)
    return alpha


def quad_curve(p0, p1, p2, steps: int = 12) -> np.ndarray:
    """A quadratic Bézier curve as fixed-point (steps, 1, 2) points for ``cv2.polylines(..., shift=SHIFT)``."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    pts = (1 - t) ** 2 * np.asarray(p0, np.float32) + 2 * (1 - t) * t * np.asarray(p1, np.float32)
    pts += t**2 * np.asarray(p2, np.float32)
    return fixed(pts).reshape(-1, 1, 2)
