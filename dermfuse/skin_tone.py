"""Skin tone around the lesion: the individual typology angle (ITA°) and its band.

Why: public dermoscopy data (HAM10000, ISIC) are mostly of light skin, so a model's numbers hold for
skin like its training images. The pipeline measures the skin tone of every image and, when the
model's training images hold few of that tone (``config.json`` ``skin_tone``, fitted by
``python -m train skin-tone``), says so beside the result.

    ITA° = arctan((L* − 50) / b*) · 180/π         (Chardon, Cretois & Hourseau 1991)

in CIELAB (D65) from the image's sRGB values (scikit-image ``rgb2lab``), on the median L* and b* of
the skin around the lesion. Bands (Del Bino & Bernerd 2013): very light > 55°, light 41–55°,
intermediate 28–41°, tan 10–28°, brown −30–10°, dark ≤ −30° (each band's upper bound inclusive).

Which pixels count as skin (on a copy whose longest side is at most ``WORK_SIDE``):
- not the lesion: outside the lesion mask dilated by ``MARGIN`` of the image's shorter side (the
  border zone is part lesion, part skin);
- not hair: a morphological black-hat of L* (closing minus image, disc of ``HAIR_KERNEL`` of the
  shorter side) above ``HAIR_CONTRAST`` marks thin dark structures, dilated by one pixel (the
  idea of DullRazor, Lee et al. 1997);
- not the black frame of a dermatoscope, nor glare: L* under ``NEAR_BLACK`` or over ``NEAR_WHITE``;
- not unlike the rest of the skin: more than ``LIGHTNESS_BAND`` L* units, or ``COLOUR_BAND`` a* or b*
  units, from the median of what is left. This drops the dermatoscope's darkened vignette corners,
  shadows, thick hair, ink marks, rulers, stickers and gel bubbles, which differ from skin in
  lightness or colour and cover less of the frame than skin does.

Skin has b* > 0 in daylight; under a dermatoscope's light or a camera's white balance its median b* is
often ≤ 0 (a colour cast: 2,596 of the 6,932 measurable HAM10000 training images). Then b* is taken as just above 0,
so ITA is its limit, +90° (very light) where L* > 50 and −90° (dark) where L* < 50, and
``colour_cast`` says so. Too little skin left (under ``MIN_SKIN_SHARE`` of the image), or no lesion
found (skin cannot be told from lesion), gives "not measurable" with the reason, never a number.

An estimate, not a colorimeter reading: the images are not colour-calibrated (the dermatoscope's
light, white balance and polarisation shift L* and b*). Estimating ITA from the non-lesion skin of
dermoscopy images follows Kinyanjui et al., MICCAI 2020.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from skimage.color import rgb2lab

# (band, lower bound): a band holds ITA above its lower bound, up to the next band's lower bound.
BANDS: tuple[tuple[str, float], ...] = (
    ("very light", 55.0), ("light", 41.0), ("intermediate", 28.0), ("tan", 10.0), ("brown", -30.0), ("dark", -math.inf),
)
BAND_NAMES: tuple[str, ...] = tuple(name for name, _ in BANDS)
DEFINITION = ("ITA° = arctan((L* − 50) / b*) · 180/π on the skin around the lesion (hair, dark artefacts, the "
              "dermatoscope's vignette and glare left out); bands very light > 55°, light 41–55°, intermediate 28–41°, "
              "tan 10–28°, brown −30–10°, dark ≤ −30°.")
SOURCE = ("Chardon, Cretois & Hourseau, Int J Cosmet Sci 13:191–208 (1991); Del Bino & Bernerd, Br J Dermatol "
          "169 Suppl 3:33–40 (2013)")
CAVEAT = "Measured on an uncalibrated image: an estimate, not a colorimeter reading."

WORK_SIDE = 256  # pixels: the longest side ITA is measured at (a median colour needs no more)
MARGIN = 0.05  # of the shorter side: how far beyond the lesion mask the skin starts
HAIR_KERNEL = 0.04  # of the shorter side: diameter of the black-hat disc (wider than a hair)
HAIR_CONTRAST = 8.0  # L* units darker than the closed image: hair
NEAR_BLACK, NEAR_WHITE = 10.0, 95.0  # L*: the frame / vignette, and glare
LIGHTNESS_BAND = 20.0  # L* units either side of the skin's median that are still skin
COLOUR_BAND = 15.0  # a* or b* units either side of the skin's median that are still skin
MIN_SKIN_SHARE = 0.03  # of the image: less measured skin than this is "not measurable"
RARE_SHARE = 0.02  # a band holding under this share of a model's measured training images is rare for it


@dataclass
class SkinTone:
    """ITA° and band of the skin around the lesion, or ``reason`` why it could not be measured.

    ``lightness`` and ``yellowness`` are the median L* and b* it was computed from; ``skin_share``
    the share of the image counted as skin; ``colour_cast``: b* ≤ 0, so ITA is its limit ±90°.
    """

    ita: float | None
    band: str | None
    lightness: float | None = None
    yellowness: float | None = None
    skin_share: float = 0.0
    colour_cast: bool = False
    reason: str | None = None

    @property
    def measured(self) -> bool:
        return self.ita is not None

    def to_dict(self) -> dict:
        return asdict(self)


def ita_degrees(lightness, yellowness):
    """ITA° from L* and b* (arrays or numbers), for b* > 0."""
    return np.degrees(np.arctan((np.asarray(lightness, dtype=float) - 50.0) / np.asarray(yellowness, dtype=float)))


def ita_band(ita: float) -> str:
    """The band of an ITA° value (:data:`BANDS`)."""
    if not -90 <= ita <= 90:
        raise ValueError(f"ITA is an angle from -90 to 90 degrees, got {ita}")
    return next(name for name, lower in BANDS if ita > lower)


def skin_pixels(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB of the image (h, w, 3) at the working size, and which of its pixels count as skin (h, w) bool.

    ``image``: RGB uint8 (H, W, 3); ``mask``: the lesion (H, W) bool. The rules are the module's.
    """
    image, mask = np.asarray(image), np.asarray(mask, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"the mask {mask.shape} must have the image's size {image.shape[:2]}")
    height, width = mask.shape
    scale = min(1.0, WORK_SIDE / max(height, width))
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    lab = rgb2lab(image).astype(np.float32)  # (h, w, 3): L* in [0, 100], a*, b*
    lightness = lab[..., 0]
    short = min(mask.shape)
    margin = max(2, round(MARGIN * short))
    lesion = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1,) * 2)) > 0
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, round(HAIR_KERNEL * short) | 1),) * 2)
    hair = cv2.morphologyEx(lightness, cv2.MORPH_BLACKHAT, disc) > HAIR_CONTRAST
    hair = cv2.dilate(hair.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    skin = ~lesion & ~hair & (lightness >= NEAR_BLACK) & (lightness <= NEAR_WHITE)
    if skin.any():
        median = np.median(lab[skin], axis=0)  # (3,)
        skin &= (np.abs(lab - median) <= (LIGHTNESS_BAND, COLOUR_BAND, COLOUR_BAND)).all(axis=-1)
    return lab, skin


def measure_skin_tone(image: np.ndarray, mask: np.ndarray) -> SkinTone:
    """ITA° and band of the skin around the lesion of an RGB uint8 image (H, W, 3) with its lesion mask (H, W).

    Not measurable (``ita`` None, ``reason`` set) when no lesion was found or too little skin is left.
    """
    lab, skin = skin_pixels(image, mask)
    if not np.asarray(mask).any():
        return SkinTone(None, None, reason="no lesion was found, so the skin around it cannot be told from the lesion")
    share = float(skin.mean())
    if share < MIN_SKIN_SHARE:
        return SkinTone(None, None, skin_share=share, reason=(
            f"too little skin around the lesion: {100 * share:.1f} % of the image after leaving out the lesion, hair, "
            f"dark artefacts and glare (at least {100 * MIN_SKIN_SHARE:.0f} % needed)"))
    lightness, yellowness = float(np.median(lab[..., 0][skin])), float(np.median(lab[..., 2][skin]))
    cast = yellowness <= 0
    ita = float(np.sign(lightness - 50.0) * 90.0) if cast else float(ita_degrees(lightness, yellowness))
    return SkinTone(ita, ita_band(ita), lightness, yellowness, share, cast)


def band_distribution(bands: list[str | None], split: str = "train", how: str = "", colour_cast: int = 0,
                      rare_share: float = RARE_SHARE) -> dict:
    """A model's training skin tones as stored in its ``config.json``: images, measured, count per band, how many
    had a colour cast, and the share under which a band is rare for it (the app's caution)."""
    measured = [b for b in bands if b is not None]
    unknown = sorted(set(measured) - set(BAND_NAMES))
    if unknown:
        raise ValueError(f"unknown skin-tone bands {unknown}: expected {', '.join(BAND_NAMES)}")
    return {"split": split, "images": len(bands), "measured": len(measured),
            "counts": {name: measured.count(name) for name in BAND_NAMES}, "colour_cast": int(colour_cast),
            "rare_share": float(rare_share), "how": how}


def training_share(distribution: dict | None, band: str | None) -> float | None:
    """The share of a model's measured training images in ``band`` (None without a stored distribution)."""
    if not distribution or band is None or not distribution.get("measured"):
        return None
    return distribution["counts"].get(band, 0) / distribution["measured"]


def describe(tone: SkinTone, distribution: dict | None) -> dict:
    """The JSON record of one image's skin tone: the measurement, and, where the model stores its training
    distribution, the band's share of its training images and whether that makes the band rare for it."""
    record = tone.to_dict()
    share = training_share(distribution, tone.band)
    if share is not None:
        record["training_share"] = share
        record["rare_in_training"] = share < distribution.get("rare_share", RARE_SHARE)
    return record


def rare_tone_caution(record: dict | None, distribution: dict | None) -> str | None:
    """The warning for an image whose skin tone is rare among the model's training images, else None."""
    if not record or not record.get("rare_in_training"):
        return None
    count, measured = distribution["counts"][record["band"]], distribution["measured"]
    rare = distribution.get("rare_share", RARE_SHARE)
    return (f"Skin tone '{record['band']}' (ITA {record['ita']:.0f}°) is rare among this model's training images: "
            f"{count} of {measured} ({100 * count / measured:.1f} %, under the {100 * rare:g} % this app calls rare). "
            "Its scores are less tested on such skin; treat them with extra caution.")
