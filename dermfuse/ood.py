"""Out-of-distribution / capture-quality gate: does this image look like the training data?

A cheap score from two views of the image, both computed on every prediction anyway:
- ``deep``: the image encoder's globally pooled features (the maps the classifier already has);
- ``capture``: a few image statistics a dermoscopy frame has and a cat photo, a screenshot, an
  over-exposed or blurred capture does not (CIELAB means and spreads, clipped-pixel shares,
  sharpness, edge density, saturation).
Each view is a diagonal Mahalanobis distance (mean squared z-score against the training split);
the score is their average. The threshold is a quantile of the training split's scores. Everything
is stored in the model's config under ``ood``. The gate warns; it never changes the scores.

The warning says what differs most (:func:`largest_difference`): on real dermoscopy from other clinics it
is mostly one capture statistic, e.g. the share of near-black pixels of a dermatoscope's round field of
view, which the training crops never have (a share the training images hold at zero has a variance at
``VAR_FLOOR``, so a black frame alone gives a score in the thousands). Naming it, with its value here and
in the training images, tells a user what is unusual and whether it matters for this image.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

THUMBNAIL = 128
VAR_FLOOR = 1e-6
# What each capture statistic is, in words, how to show its value, and what usually makes it unusual (in its order).
CAPTURE_STATISTICS = (
    ("lightness (mean L*)", lambda v: f"{v * 100 / 255:.0f}", "a darker or brighter exposure"),
    ("red–green tint (mean a*)", lambda v: f"{v - 128:+.1f}", "the colour of the light or the camera's white balance"),
    ("yellow–blue tint (mean b*)", lambda v: f"{v - 128:+.1f}", "the colour of the light or the camera's white balance"),
    ("spread of lightness (L*)", lambda v: f"{v * 100 / 255:.1f}", "strong shading, a dark frame or glare"),
    ("spread of red–green (a*)", lambda v: f"{v:.1f}", "colourful surroundings or marks"),
    ("spread of yellow–blue (b*)", lambda v: f"{v:.1f}", "colourful surroundings or marks"),
    ("share of blown-out white pixels", lambda v: f"{100 * v:.1f} %", "glare or over-exposure"),
    ("share of near-black pixels", lambda v: f"{100 * v:.1f} %",
     "a dark frame around the dermatoscope's field of view, or under-exposure"),
    ("sharpness (log variance of the Laplacian)", lambda v: f"{v:.1f}", "blur, or a sharper camera"),
    ("share of sharp edges", lambda v: f"{100 * v:.1f} %", "text, rulers, hair or drawings"),
    ("colour saturation", lambda v: f"{100 * v / 255:.0f} %", "the light, the camera or a stain"),
)


def thumbnail(image: np.ndarray) -> np.ndarray:
    """The THUMBNAIL² square (area-averaged) that the capture statistics and the assessability gate
    (``assess.py``) are computed on, so they do not depend on the upload's resolution. A thumbnail is its
    own thumbnail (OpenCV's resize to the same size copies), so a caller can make it once for both."""
    if image.shape[:2] == (THUMBNAIL, THUMBNAIL):
        return image
    return cv2.resize(image, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)


def sharpness(gray: np.ndarray) -> float:
    """How sharp a grey thumbnail is: the log of its Laplacian's variance (1 + variance). Blur lowers it."""
    return float(np.log1p(cv2.Laplacian(gray, cv2.CV_32F).var()))


def capture_statistics(image: np.ndarray) -> np.ndarray:
    """Capture statistics of an RGB uint8 image (H, W, 3), or of its ``thumbnail``, → float vector (11,)."""
    small = thumbnail(image)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float32)
    return np.array([
        *lab.mean(0), *lab.std(0),
        (gray >= 250).mean(), (gray <= 5).mean(),
        sharpness(gray),
        (cv2.Canny(gray, 50, 150) > 0).mean(),
        hsv[:, 1].mean(),
    ], dtype=np.float32)


def pooled_features(image_maps: torch.Tensor) -> np.ndarray:
    """Encoder maps (B, C, h, w) → pooled features (B, C) as float32 numpy."""
    return image_maps.detach().float().mean(dim=(2, 3)).cpu().numpy()


def fit_ood(deep: np.ndarray, capture: np.ndarray, quantile: float = 0.99) -> dict:
    """Fit the gate on the training split's features (N, C) and capture statistics (N, 11)."""
    if len(deep) < 10:
        raise ValueError(f"fitting the OOD gate needs at least 10 training images, got {len(deep)}")
    config = {
        "deep_mean": deep.mean(0).tolist(), "deep_var": np.maximum(deep.var(0), VAR_FLOOR).tolist(),
        "capture_mean": capture.mean(0).tolist(), "capture_var": np.maximum(capture.var(0), VAR_FLOOR).tolist(),
        "quantile": quantile,
    }
    config["threshold"] = float(np.quantile(ood_score(config, deep, capture), quantile))
    return config


def ood_distances(config: dict, deep: np.ndarray, capture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each view's distance (N,) from the training data: mean squared z-score of the deep features and of
    the capture statistics."""
    def distance(x, mean, var):
        return (((np.atleast_2d(x) - np.asarray(mean)) ** 2) / np.asarray(var)).mean(axis=1)

    return distance(deep, config["deep_mean"], config["deep_var"]), distance(capture, config["capture_mean"], config["capture_var"])


def ood_score(config: dict, deep: np.ndarray, capture: np.ndarray) -> np.ndarray:
    """Scores (N,) — larger = less like the training data; compare with ``config["threshold"]``."""
    return combined_score(ood_distances(config, deep, capture))


def largest_difference(config: dict, deep_distance: float, capture: np.ndarray) -> str:
    """In words, what most sets one image apart from the training images: the view with the larger distance and,
    for the capture statistics (11,), the one with the largest squared z-score, its value here and the training
    images' mean (``CAPTURE_STATISTICS``)."""
    z2 = (np.asarray(capture) - np.asarray(config["capture_mean"])) ** 2 / np.asarray(config["capture_var"])
    if deep_distance >= z2.mean():
        return ("most of all in what the classifier's image encoder sees: it may not be a dermoscopy image, or it is "
                "blurred or badly exposed")
    top = int(np.argmax(z2))
    name, shown, cause = CAPTURE_STATISTICS[top]
    return (f"most of all in its {name}: {shown(float(capture[top]))} here, {shown(float(config['capture_mean'][top]))} on "
            f"average in the training images (usually {cause})")


def combined_score(distances: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The score from :func:`ood_distances`: the two views' average."""
    return 0.5 * (distances[0] + distances[1])


def non_dermoscopy_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` RGB images (256×256) that are not dermoscopy — noise, flat colour, text screenshots, simple drawn
    scenes — the negatives against which the gate is checked (tests, ``python -m train real``)."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        elif kind == 1:
            img = np.full((256, 256, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        elif kind == 2:
            img = np.full((256, 256, 3), 250, np.uint8)
            for line in range(12):
                cv2.putText(img, f"Report {rng.integers(1e6)} value={rng.random():.3f}", (5, 20 + 20 * line),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.4, (20, 20, 20), 1)
        else:  # a landscape: sky, grass, a sun, a house
            img = np.zeros((256, 256, 3), np.uint8)
            img[:150] = (110 + rng.integers(-20, 20), 170, 235)
            img[150:] = (60, 150 + rng.integers(-30, 30), 50)
            cv2.circle(img, (int(rng.integers(30, 220)), 50), 25, (250, 220, 60), -1)
            x = int(rng.integers(20, 150))
            cv2.rectangle(img, (x, 110), (x + 70, 190), (170, 60, 40), -1)
        images.append(img)
    return images
