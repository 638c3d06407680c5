"""Everything around the lesion: the skin, the planted marker ink, and the nuisances of dermoscopy.

Skin tones span a Fitzpatrick-like range (I–VI), drawn mostly fair as in HAM10000 but with every tone
present. Nuisances follow what real dermoscopy images show (hair, the scope's vignette and dark
circular frame, ruler markings, gel bubbles, blur, JPEG artefacts, colour cast, sensor noise); each
appears with a probability that rises with ``difficulty``.
"""

from __future__ import annotations

import cv2
import numpy as np

from dermfuse.data.phantom.paint import (
    SHIFT,
    blend,
    fixed,
    jitter_colour,
    layer_alpha,
    new_layer,
    pixel_grid,
    quad_curve,
    smoothstep,
    value_noise,
)

# Skin as seen through a polarised dermoscope, from Fitzpatrick I (very fair) to VI (very dark), RGB.
SKIN_TONES = np.array(
    [
        (0.96, 0.85, 0.79),
        (0.93, 0.77, 0.67),
        (0.85, 0.65, 0.51),
        (0.71, 0.51, 0.37),
        (0.53, 0.36, 0.25),
        (0.37, 0.25, 0.18),
    ],
    np.float32,
)
# Surgical skin-marker ink (gentian violet), the planted shortcut.
INK_VIOLET = (0.42, 0.17, 0.62)
# Lesions and ink stay inside this radius (× size) around the image centre, and the scope's dark
# frame never starts inside it, so neither the mask nor the ink is ever hidden by the frame.
SAFE_RADIUS = 0.44


def px(value: float, size: int, minimum: float = 1.0) -> float:
    """A length given at 256×256, scaled to ``size``."""
    return max(minimum, value * size / 256.0)


def skin_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Textured skin: ``(image (H, W, 3) float32, base RGB colour, tone in [0, 1])``."""
    tone = float(rng.beta(1.4, 3.0))  # 0 very fair … 1 very dark; HAM10000 is mostly fair
    position = tone * (len(SKIN_TONES) - 1)
    low = int(position)
    high = min(low + 1, len(SKIN_TONES) - 1)
    base = SKIN_TONES[low] + (SKIN_TONES[high] - SKIN_TONES[low]) * (position - low)
    base = jitter_colour(rng, base, 0.015)
    img = np.empty((size, size, 3), np.float32)
    img[:] = base
    # uneven illumination and pigmentation
    img *= (1.0 + 0.05 * value_noise(rng, size, 3, octaves=2))[..., None]
    # patchy erythema
    redness = smoothstep(0.3, 2.0, value_noise(rng, size, 5, octaves=2)) * rng.uniform(0.0, 0.35)
    blend(img, base * np.float32((1.0, 0.72, 0.74)), redness)
    # skin furrows: the zero-crossings of a smooth field form a cell-like net of fine lines
    furrows = smoothstep(0.15, 0.0, np.abs(value_noise(rng, size, 14, octaves=2))) * rng.uniform(0.015, 0.05)
    img *= (1.0 - furrows)[..., None]
    img += rng.standard_normal((size, size, 1), dtype=np.float32) * np.float32(0.008)
    return img, base, tone


def marker_ink(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> int:
    """Paint a few violet marker dots/strokes on the skin near the lesion, never on it.

    Marks are clipped to the outside of the mask dilated by ~3 px, so the lesion as drawn is never
    touched. Returns the number of inked pixels.
    """
    size = img.shape[0]
    lesion = mask.astype(np.uint8)
    distance = cv2.distanceTransform(1 - lesion, cv2.DIST_L2, 3)
    yy, xx = pixel_grid(size)
    centre = (size - 1) / 2.0
    safe = (yy - centre) ** 2 + (xx - centre) ** 2 <= (SAFE_RADIUS * size) ** 2
    near = safe & (distance >= px(6, size)) & (distance <= px(30, size))
    candidates = np.flatnonzero(near)
    if candidates.size == 0:
        candidates = np.flatnonzero(safe & (distance >= px(6, size)))
    if candidates.size == 0:
        return 0
    layer = new_layer(size)
    for _ in range(int(rng.integers(2, 6))):
        y, x = divmod(int(candidates[rng.integers(candidates.size)]), size)
        if rng.random() < 0.5:
            radius = px(rng.uniform(2.5, 4.5), size, 1.5)
            cv2.circle(layer, tuple(fixed((x, y))), int(radius * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
        else:
            angle = rng.uniform(0, 2 * np.pi)
            half = px(rng.uniform(5, 12), size, 2) * np.array([np.cos(angle), np.sin(angle)])
            bend = rng.normal(0, 0.3) * half[::-1] * (1, -1)
            curve = quad_curve((x, y) - half, (x, y) + bend, (x, y) + half)
            thickness = int(round(px(rng.uniform(2.5, 4.0), size, 2)))
            cv2.polylines(layer, [curve], False, 255, thickness, cv2.LINE_AA, SHIFT)
    keep_out = cv2.dilate(lesion, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))).astype(bool)
    layer[keep_out] = 0
    blend(img, jitter_colour(rng, INK_VIOLET, 0.03), layer_alpha(layer) * np.float32(rng.uniform(0.8, 0.95)))
    return int(np.count_nonzero(layer))


def _hair(img: np.ndarray, rng: np.random.Generator) -> None:
    size = img.shape[0]
    layer = new_layer(size)
    direction = rng.uniform(0, np.pi)
    thickness = int(round(px(rng.uniform(1.0, 2.2), size)))
    for _ in range(int(min(40, 1 + rng.geometric(0.12)))):
        angle = direction + rng.normal(0, 0.5)
        length = rng.uniform(0.3, 1.1) * size
        start = rng.uniform(-0.1, 1.1, 2) * size
        vec = length * np.array([np.cos(angle), np.sin(angle)])
        bow = rng.normal(0, 0.15) * np.array([-vec[1], vec[0]])
        cv2.polylines(layer, [quad_curve(start, start + vec / 2 + bow, start + vec, 16)], False,
                      int(rng.uniform(170, 255)), thickness, cv2.LINE_AA, SHIFT)  # fmt: skip
    colour = (0.10, 0.07, 0.06) if rng.random() < 0.8 else (0.55, 0.45, 0.38)  # dark, or fair/grey
    blend(img, jitter_colour(rng, colour, 0.03), layer_alpha(layer))


def _gel_bubbles(img: np.ndarray, rng: np.random.Generator) -> None:
    size = img.shape[0]
    rim, inner = new_layer(size), new_layer(size)
    for _ in range(int(rng.integers(1, 9))):
        radius = px(rng.uniform(2, 6) if rng.random() < 0.6 else rng.uniform(8, 28), size, 1.5)
        centre = rng.uniform(0.05, 0.95, 2) * size
        c, r = tuple(fixed(centre)), int(radius * (1 << SHIFT))
        cv2.circle(inner, c, r, 255, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(rim, c, r, 255, max(1, int(round(px(1.2, size)))), cv2.LINE_AA, SHIFT)
        glint = centre + np.array([-0.4, -0.4]) * radius
        cv2.circle(rim, tuple(fixed(glint)), int(max(1.0, 0.15 * radius) * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
    blend(img, (1.0, 1.0, 1.0), layer_alpha(inner) * np.float32(0.08))
    blend(img, (0.98, 0.98, 0.98), layer_alpha(rim) * np.float32(rng.uniform(0.6, 0.9)))


def _ruler(img: np.ndarray, rng: np.random.Generator) -> None:
    size = img.shape[0]
    layer = new_layer(size)
    offset = rng.uniform(0.04, 0.14) * size
    start, stop = sorted(rng.uniform(0.05, 0.95, 2) * size)
    stop = max(stop, start + 0.3 * size)
    step = px(rng.uniform(6, 10), size, 3)
    thickness = max(1, int(round(px(1.0, size))))
    for i, t in enumerate(np.arange(start, stop, step)):
        length = px(10 if i % 5 == 0 else 5, size, 2)
        cv2.line(layer, tuple(fixed((t, offset))), tuple(fixed((t, offset + length))), 255, thickness, cv2.LINE_AA, SHIFT)
    cv2.line(layer, tuple(fixed((start, offset))), tuple(fixed((stop, offset))), 255, thickness, cv2.LINE_AA, SHIFT)
    alpha = layer_alpha(np.ascontiguousarray(np.rot90(layer, int(rng.integers(4)))))
    blend(img, (0.08, 0.08, 0.09), alpha * np.float32(rng.uniform(0.6, 0.95)))


def _vignette_and_frame(img: np.ndarray, rng: np.random.Generator, lesion_extent: float, frame: bool) -> None:
    size = img.shape[0]
    yy, xx = pixel_grid(size)
    centre = (size - 1) / 2.0
    r = np.sqrt((yy - centre) ** 2 + (xx - centre) ** 2) / np.float32(size / 2.0)
    img *= (1.0 - np.float32(rng.uniform(0.1, 0.35)) * r * r)[..., None]
    if frame:
        radius = rng.uniform(max(SAFE_RADIUS + 0.03, lesion_extent / size + 0.02), 0.72) * 2.0
        width = rng.uniform(0.02, 0.08)
        blend(img, jitter_colour(rng, (0.04, 0.03, 0.03), 0.01), smoothstep(radius, radius + width, r))


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Compress and decompress a uint8 RGB image with OpenCV's JPEG codec at ``quality``."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the phantom image")
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def apply_nuisances(
    img: np.ndarray, rng: np.random.Generator, difficulty: float, lesion_extent: float
) -> tuple[np.ndarray, dict]:
    """Add dermoscopy nuisances to a float image; return the final uint8 RGB image and what was added.

    ``lesion_extent`` is the lesion's largest distance (pixels) from the image centre: the scope's
    frame starts beyond it, so the frame never covers the lesion.
    """
    d = difficulty
    size = img.shape[0]
    present = {
        "hair": rng.random() < 0.25 + 0.35 * d,
        "gel_bubbles": rng.random() < 0.2 + 0.3 * d,
        "ruler": rng.random() < 0.1 + 0.15 * d,
        "scope_frame": rng.random() < 0.45 + 0.2 * d,
        "blur": rng.random() < 0.15 + 0.35 * d,
    }
    if present["hair"]:
        _hair(img, rng)
    if present["gel_bubbles"]:
        _gel_bubbles(img, rng)
    if present["ruler"]:
        _ruler(img, rng)
    img *= 1.0 + rng.normal(0, 0.03 + 0.05 * d, 3).astype(np.float32)  # white balance / light colour
    _vignette_and_frame(img, rng, lesion_extent, present["scope_frame"])
    if present["blur"]:
        img = cv2.GaussianBlur(img, (0, 0), px(rng.uniform(0.5, 0.8 + 1.2 * d), size, 0.3))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.003, 0.01 + 0.015 * d))
    rgb = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    quality = None
    if rng.random() < 0.5 + 0.4 * d:
        quality = int(rng.integers(int(round(90 - 50 * d)), 96))
        rgb = jpeg_roundtrip(rgb, quality)
    present["jpeg_quality"] = quality
    return rgb, present
