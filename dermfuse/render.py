"""Pictures of a diagnosis: the lesion outline, heatmaps over the image, the segmenter's attention."""

from __future__ import annotations

import cv2
import numpy as np

OUTLINE_RGB = (0, 255, 120)


def outline(image: np.ndarray, mask: np.ndarray, colour=OUTLINE_RGB, thickness: int | None = None) -> np.ndarray:
    """The image (H, W, 3 uint8) with the mask's outline drawn on it."""
    out = np.ascontiguousarray(image.copy())
    if mask.any():
        thickness = thickness or max(2, round(max(mask.shape) / 250))
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, mask: np.ndarray | None = None) -> np.ndarray:
    """A [0, 1] heatmap (H, W) in the jet colour map blended over the image, optionally outlined."""
    coloured = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    out = cv2.addWeighted(image, 1 - alpha, coloured, alpha, 0)
    return outline(out, mask, colour=(255, 255, 255)) if mask is not None else out


def gray_map(values: np.ndarray) -> np.ndarray:
    """A [0, 1] map (H, W) as an RGB image (for the attention-gate maps)."""
    return cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * np.clip(values, 0, 1)), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
