"""White balance by Shades of Gray: every image brought to one light before a classifier that asks for it sees it.

Why: a 15 % colour cast (a dermatoscope or camera set differently) changed the shipped model's top class on 19–25 % of
the validation images (``experiments/capture.py``): it reads the light's colour as evidence. Shades of Gray
(Finlayson & Trezzi 2004; the colour-constancy step of several ISIC challenge entries) estimates the light's colour
as each channel's p-norm mean (p = 6) over the lit pixels, and the image is scaled channel by channel so that its
light has a reference chromaticity (the training images' mean light): its brightness is kept.

A model trained this way stores the reference in its config (``white_balance``); the pipeline and the training
data both call :func:`white_balanced`, so the classifier's streams see the same pixels in training and in use. The
segmenter and the assessability gate keep seeing the image as it is.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

SHADES_OF_GRAY = 6  # the p of the Minkowski mean that estimates the light's colour
LIT = 30  # a pixel whose R + G + B is at most this is a dermoscope's black corner, not lit skin
ESTIMATE_PIXELS = 1 << 18  # the light is estimated on at most about this many pixels (every k-th row and column)


def light_colour(pixels: np.ndarray) -> np.ndarray:
    """The light's colour (R, G, B) of uint8 pixels (H, W, 3), by Shades of Gray over the lit pixels."""
    step = max(1, math.ceil(math.sqrt(pixels.shape[0] * pixels.shape[1] / ESTIMATE_PIXELS)))
    values = pixels[::step, ::step].reshape(-1, 3).astype(np.float64)
    lit = values.sum(axis=1) > LIT
    values = values[lit] if lit.any() else values
    return (values**SHADES_OF_GRAY).mean(axis=0) ** (1 / SHADES_OF_GRAY)


def light_chromaticity(pixels: np.ndarray) -> np.ndarray:
    """The light's colour (``light_colour``) scaled to sum to 1: what white balance compares."""
    colour = light_colour(pixels)
    return colour / max(colour.sum(), 1e-9)


def white_balanced(image: Image.Image | np.ndarray, reference) -> Image.Image | np.ndarray:
    """``image`` (RGB PIL or uint8 (H, W, 3)) with each channel scaled so its light has the chromaticity ``reference``,
    clipped to 0–255; the same type back. An image with no light in a channel (all black) is returned as it is."""
    pixels = np.asarray(image)
    light = light_colour(pixels)
    if not (light > 0).all():
        return image
    gains = np.asarray(reference, np.float64) / (light / light.sum())
    tables = [np.clip(np.arange(256, dtype=np.float64) * gain, 0, 255).astype(np.uint8) for gain in gains]
    balanced = np.stack([tables[c][pixels[..., c]] for c in range(3)], axis=-1)
    return Image.fromarray(balanced) if isinstance(image, Image.Image) else balanced


def mean_light(images) -> list[float]:
    """The mean light chromaticity of ``images`` (uint8 arrays or PIL images): the reference a model is balanced to."""
    chromaticities = [light_chromaticity(np.asarray(image)) for image in images]
    if not chromaticities:
        raise ValueError("the training light needs at least one image")
    return [float(v) for v in np.mean(chromaticities, axis=0)]
