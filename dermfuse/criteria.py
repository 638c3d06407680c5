"""The ABCD rule of dermoscopy (Stolz et al. 1994) from a lesion mask and its pixels: A, B and C scored,
each with the numbers behind it and its definition in words, so the screen can say how it was made.

Why a module of its own: the rule is a published scoring scheme with its own vocabulary and
thresholds; ``measure.py`` reports its raw quantities (the mirror non-overlap, the colours) by
calling the functions here, so the page's measurements and the ABCD panel never disagree.

- **A** (0–2): the lesion is mirrored about each of its two principal axes through the centroid
  (second moments of the mask). An axis is asymmetric when the *shape* or the *colour make-up*
  differs across it: shape, when the share of the lesion and its mirror image together that does not
  overlap is at least ``SHAPE_ASYMMETRY`` (0.10: ten times the 0.01 that an outline drawn 2 px too wide
  on one side gives a disc of radius 100 px, δ/2r); colour, when the two halves' shares of the ABCD colours
  differ by a total-variation distance of at least ``COLOUR_ASYMMETRY`` (0.20: a fifth of a half's
  area is coloured differently from the other half, four times the 5 % a colour needs to count).
  Stolz also mirrors *structures*; they are not detected here, so they do not enter A.
- **B** (0–8): the outline is cut into 8 pie segments of 45° around the centroid, starting at the
  major axis. In each, the lightness profile across the outline is measured: the median CIELAB L* in
  bins of ``PROFILE_BIN`` (5 %) of the lesion's equivalent radius, from ``PROFILE_SPAN`` (30 %) inside
  the outline to 30 % outside. The segment's border is *abrupt* (a sharp cut-off of pigment) when the
  profile's step from lesion to skin is at least ``MIN_STEP`` L* (a visible step at all) and at least
  ``ABRUPT_SHARE`` (half) of it happens within ``STEEP_SPAN`` (10 %) of the radius, anywhere in the
  profile: a pigment that fades out gradually spreads its step wider. Looking for the steepest stretch,
  not at the outline itself, keeps the score from hanging on where exactly a segmenter drew the outline.
- **C** (1–6): the image is first white-balanced on the skin around the lesion (von Kries gains in linear
  RGB that give that skin the chroma ``SKIN_CHROMA``: dermatoscopes differ in colour cast, and a pink
  cast would otherwise make every nevus "red"). Each lesion pixel (lightly smoothed, σ = 1 % of the
  lesion's equivalent diameter, so single pixels of a transition do not count) then takes the nearest of
  six reference colours in CIELAB (``COLOUR_REFERENCES``, ours: approximate, not a published
  calibration), if it lies within ``MAX_COLOUR_DISTANCE`` ΔE*ab of it; a colour counts when it covers at
  least ``MIN_COLOUR_SHARE`` (5 %) of the lesion. Hairs are not removed: dense dark hair can add dark brown.
- **D** (differential structures: network, structureless areas, dots, globules, streaks) is *not*
  computed. The total dermoscopy score TDS = 1.3·A + 0.1·B + 0.5·C + 0.5·D cannot be given; the
  partial sum 1.3·A + 0.1·B + 0.5·C is, labelled as such: it cannot be read against the TDS
  cut-offs (4.75, 5.45), which assume D.

Colours and border profiles are measured on a copy whose longest side is at most ``WORK_SIDE`` pixels: every
quantity is a share or a ratio, so it does not depend on the image's resolution, and a 40-MP upload
costs what a 0.3-MP one does. The shape non-overlap uses the mask at full size (cheap).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

SOURCE = ("Stolz W, Riemann A, Cognetta AB, et al. ABCD rule of dermatoscopy: a new practical method for early "
          "recognition of malignant melanoma. Eur J Dermatol 1994;4:521–527. Weights as in Nachbar F, Stolz W, "
          "Merkle T, et al. The ABCD rule of dermatoscopy. J Am Acad Dermatol 1994;30:551–559.")
WEIGHTS = {"asymmetry": 1.3, "border": 0.1, "colours": 0.5, "structures": 0.5}
PARTIAL_LABEL = "partial score 1.3·A + 0.1·B + 0.5·C (D not computed)"
NOT_COMPUTED = ("D (differential structures: pigment network, structureless areas, dots, globules, streaks) is not "
                "computed, so the total dermoscopy score (TDS) is not given. The partial score cannot be read against "
                "the TDS cut-offs (4.75, 5.45), which include D.")

SHAPE_ASYMMETRY = 0.10
COLOUR_ASYMMETRY = 0.20
SEGMENTS = 8
PROFILE_SPAN = 0.30  # of the equivalent radius, on each side of the outline
PROFILE_BIN = 0.05
STEEP_SPAN = 0.10
ABRUPT_SHARE = 0.5
MIN_STEP = 4.0  # L* units
MIN_BIN_PIXELS = 3  # per segment and bin; fewer (e.g. outside the frame) and the segment cannot be judged
WORK_SIDE = 512
SMOOTHING = 0.01  # Gaussian σ as a share of the equivalent diameter
# CIELAB (L*, a*, b*) references of the six ABCD colours (ours, approximate), each a range of
# MAX_COLOUR_DISTANCE ΔE*ab around it.
COLOUR_REFERENCES = {
    "white": (91.0, 1.0, 3.0),
    "red": (45.0, 52.0, 30.0),
    "light brown": (56.0, 19.0, 31.0),
    "dark brown": (29.0, 13.0, 19.0),
    "blue-grey": (48.0, 1.0, -16.0),
    "black": (9.0, 2.0, 1.0),
}
MAX_COLOUR_DISTANCE = 30.0
# Dermatoscopes differ in white balance (HAM10000's skin a* spans 4–46): colours are judged after a von Kries
# white balance that gives the skin around the lesion the median skin chroma (a*, b*) of the 140 PH2 images (one
# calibrated dermatoscope, on which the references were checked by eye), measured by us the same way.
SKIN_CHROMA = (13.0, 17.0)
MIN_SKIN_PIXELS = 50
MIN_COLOUR_SHARE = 0.05
UNASSIGNED = -1


@dataclass
class Criterion:
    """One ABCD criterion: its score in ``[low, high]``, the numbers it was computed from, and how."""

    name: str
    score: int
    low: int
    high: int
    weight: float
    numbers: dict
    definition: str


@dataclass
class ABCDCriteria:
    """A, B and C of the ABCD rule for one lesion; D not computed (see :data:`NOT_COMPUTED`)."""

    asymmetry: Criterion
    border: Criterion
    colours: Criterion
    partial_score: float
    partial_label: str = PARTIAL_LABEL
    not_computed: str = NOT_COMPUTED
    source: str = SOURCE

    @property
    def criteria(self) -> tuple[Criterion, Criterion, Criterion]:
        return self.asymmetry, self.border, self.colours

    def to_dict(self) -> dict:
        return asdict(self)


def lesion_criteria(image: np.ndarray, mask: np.ndarray) -> ABCDCriteria | None:
    """A, B and C of the lesion in ``mask`` (H, W bool) on ``image`` (H, W, 3 uint8 RGB); None without a lesion."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape[:2]}")
    if not mask.any():
        return None
    lab, small, skin = working_copy(image, mask)
    labels = colour_labels(lab, small)
    asymmetry, border = asymmetry_criterion(mask, small, labels), border_criterion(lab, small)
    colours = colour_criterion(labels, small, skin)
    partial = sum(WEIGHTS[key] * c.score for key, c in zip(("asymmetry", "border", "colours"), (asymmetry, border, colours)))
    return ABCDCriteria(asymmetry, border, colours, partial_score=round(partial, 2))


# ------------------------------------------------------------------------------------------------ frame
def working_copy(image: np.ndarray, mask: np.ndarray, side: int = WORK_SIDE) -> tuple[np.ndarray, np.ndarray, dict]:
    """CIELAB (float32, L* 0–100) of the image smoothed by ``SMOOTHING`` of the lesion's diameter and white-balanced
    on the skin (:func:`skin_balance`), and the mask, both with the longest side at most ``side``; and the
    balance applied."""
    scale = min(1.0, side / max(mask.shape))
    if scale < 1:
        size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if not mask.any():  # a lesion of a few pixels can vanish at the working size: keep its centre pixel
        mask = np.zeros(mask.shape, bool)
        mask[mask.shape[0] // 2, mask.shape[1] // 2] = True
    linear = smooth_each_side(srgb_to_linear(image.astype(np.float32) / 255), mask, SMOOTHING * equivalent_diameter(mask))
    gains, skin = skin_balance(linear, mask)
    lab = cv2.cvtColor(np.clip(linear * gains, 0, 1), cv2.COLOR_LRGB2Lab)
    return lab, mask, {"skin_lab": skin, "white_balance_gains": [round(float(g), 3) for g in gains]}


def smooth_each_side(values: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (σ in pixels) of the lesion and of the skin separately (normalised convolution), so the
    lesion's rim does not take the skin's colour nor the skin the lesion's."""
    if sigma < 0.5:
        return values
    weight = mask.astype(np.float32)[..., None]  # (H, W, 1): 1 on the lesion, 0 on the skin
    # One blur of both sides' weighted values and weights: (H, W, 8) = lesion values, weight, skin values, weight.
    stacked = np.concatenate([values * weight, weight, values * (1 - weight), 1 - weight], axis=2)
    blurred = cv2.GaussianBlur(stacked, (0, 0), sigma)
    lesion = blurred[..., :3] / np.maximum(blurred[..., 3:4], 1e-6)
    skin = blurred[..., 4:7] / np.maximum(blurred[..., 7:8], 1e-6)
    return np.where(mask[..., None], lesion, skin)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] → linear light (IEC 61966-2-1)."""
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def skin_balance(linear: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[float] | None]:
    """Per-channel gains (von Kries, in linear RGB) that give the skin around the lesion the chroma ``SKIN_CHROMA``
    at its own lightness, and the skin's CIELAB before. The skin: pixels between 10 % and 50 % of the lesion's
    equivalent radius outside its outline, darker ones (L* < 30: hairs, a dark frame) left out. Gains of 1 (and
    None) with fewer than ``MIN_SKIN_PIXELS`` of them (the lesion fills the frame)."""
    radius = equivalent_diameter(mask) / 2
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    lightness = cv2.cvtColor(linear, cv2.COLOR_LRGB2Lab)[..., 0]
    ring = (outside > 0.1 * radius) & (outside <= 0.5 * radius) & (lightness >= 30)
    if ring.sum() < MIN_SKIN_PIXELS:
        return np.ones(3, np.float32), None
    skin = np.median(linear[ring], axis=0).astype(np.float32)  # (3,)
    skin_lab = cv2.cvtColor(skin[None, None], cv2.COLOR_LRGB2Lab)[0, 0]
    target = cv2.cvtColor(np.array([[[skin_lab[0], *SKIN_CHROMA]]], np.float32), cv2.COLOR_Lab2LRGB)[0, 0]
    gains = np.clip(target / np.maximum(skin, 1e-4), 0.25, 4.0).astype(np.float32)
    return gains, [round(float(v), 2) for v in skin_lab]


def equivalent_diameter(mask: np.ndarray) -> float:
    """Diameter of the disc with the mask's area, in pixels."""
    return math.sqrt(4 * float(mask.sum()) / math.pi)


def principal_axes(mask: np.ndarray) -> tuple[tuple[float, float], float, float]:
    """(centroid (x, y), angle of the major axis in degrees from the image's x axis (y down), elongation
    sqrt(λ_major / λ_minor) ≥ 1) from the mask's second moments."""
    moments = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    mu20, mu02, mu11 = (moments[k] / moments["m00"] for k in ("mu20", "mu02", "mu11"))
    angle = 0.5 * math.degrees(math.atan2(2 * mu11, mu20 - mu02))
    spread = math.hypot(mu20 - mu02, 2 * mu11)
    major, minor = (mu20 + mu02 + spread) / 2, (mu20 + mu02 - spread) / 2
    return (cx, cy), angle, math.sqrt(major / max(minor, 1e-9))


def principal_frame(mask: np.ndarray, *layers: np.ndarray) -> list[np.ndarray]:
    """The mask (and each of ``layers``, nearest-neighbour) rotated about the centroid onto a square canvas
    centred on it, major axis horizontal: flipping rows mirrors about the major axis, columns about the minor."""
    (cx, cy), angle, _ = principal_axes(mask)
    ys, xs = np.nonzero(mask)
    radius = int(math.ceil(np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2).max())) + 2
    side = 2 * radius + 1
    rotation = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    rotation[:, 2] += (radius - cx, radius - cy)
    warp = lambda values, fill: cv2.warpAffine(values, rotation, (side, side), flags=cv2.INTER_NEAREST,  # noqa: E731
                                               borderValue=fill)
    out = [warp(mask.astype(np.uint8), 0) > 0]
    out += [warp(layer.astype(np.int16), UNASSIGNED).astype(layer.dtype) for layer in layers]
    return out


def mirror_non_overlap(mask: np.ndarray) -> tuple[float, float]:
    """Share of the lesion and its mirror image together that does not overlap, mirrored about the major and
    about the minor principal axis: 0 = symmetric, 1 = no overlap."""
    aligned = principal_frame(mask)[0]
    total = 2 * aligned.sum()
    return float((aligned ^ aligned[::-1, :]).sum() / total), float((aligned ^ aligned[:, ::-1]).sum() / total)


# ---------------------------------------------------------------------------------------------- colours
def colour_labels(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Index into ``COLOUR_REFERENCES`` of each lesion pixel's nearest reference within
    ``MAX_COLOUR_DISTANCE`` ΔE*ab; ``UNASSIGNED`` (-1) elsewhere and outside the mask. (H, W) int8."""
    reference = np.asarray(list(COLOUR_REFERENCES.values()), np.float32)  # (6, 3)
    pixels = lab[mask]  # (N, 3)
    # Squared ΔE*ab as |p|² − 2 p·r + |r|²: one matrix product instead of an (N, 6, 3) difference.
    squared = (pixels ** 2).sum(1, keepdims=True) - 2 * pixels @ reference.T + (reference ** 2).sum(1)  # (N, 6)
    nearest = squared.argmin(1)
    nearest[squared[np.arange(len(pixels)), nearest] > MAX_COLOUR_DISTANCE ** 2] = UNASSIGNED
    labels = np.full(mask.shape, UNASSIGNED, np.int8)
    labels[mask] = nearest
    return labels


def shares(labels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Share of the mask's pixels in each ABCD colour (and ``"unassigned"``)."""
    counts = np.bincount(labels[mask].astype(np.int64) + 1, minlength=len(COLOUR_REFERENCES) + 1) / max(1, mask.sum())
    return {"unassigned": float(counts[0]), **{name: float(c) for name, c in zip(COLOUR_REFERENCES, counts[1:])}}


def colour_shares(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Share of the lesion in each ABCD colour (criterion C's numbers), from the RGB image (H, W, 3 uint8)."""
    lab, small, _ = working_copy(image, mask)
    return shares(colour_labels(lab, small), small)


def counted_colours(colour_share: dict[str, float]) -> list[str]:
    """The ABCD colours covering at least ``MIN_COLOUR_SHARE`` of the lesion."""
    return [name for name in COLOUR_REFERENCES if colour_share[name] >= MIN_COLOUR_SHARE]


def colour_criterion(labels: np.ndarray, mask: np.ndarray, skin: dict) -> Criterion:
    found = shares(labels, mask)
    counted = counted_colours(found)
    reference = ", ".join(f"{name} ({', '.join(f'{v:g}' for v in lab)})" for name, lab in COLOUR_REFERENCES.items())
    return Criterion(
        name="Colours", score=max(1, len(counted)), low=1, high=6, weight=WEIGHTS["colours"],
        numbers={"colours": counted, "shares": {k: round(v, 4) for k, v in found.items()},
                 "min_share": MIN_COLOUR_SHARE, "max_distance": MAX_COLOUR_DISTANCE, **skin},
        definition=(f"How many of the six ABCD colours cover at least {MIN_COLOUR_SHARE:.0%} of the lesion (at least 1 "
                    f"by definition). Each lesion pixel, smoothed over {SMOOTHING:.0%} of the lesion's diameter, takes the "
                    f"nearest reference colour in CIELAB (L*, a*, b*) within ΔE*ab {MAX_COLOUR_DISTANCE:g}: {reference}; "
                    "first the image is white-balanced (per-channel gains in linear RGB) so the skin around the lesion has "
                    f"the chroma a* {SKIN_CHROMA[0]:g}, b* {SKIN_CHROMA[1]:g}, undoing a camera's colour cast. The references are ours "
                    "(approximate), not a published calibration."),
    )  # fmt: skip


# -------------------------------------------------------------------------------------------- asymmetry
def asymmetry_criterion(mask: np.ndarray, small: np.ndarray, labels: np.ndarray) -> Criterion:
    shape = mirror_non_overlap(mask)
    aligned, aligned_labels = principal_frame(small, labels)
    centre = aligned.shape[0] // 2
    colour = (half_difference(aligned, aligned_labels, rows=True, centre=centre),
              half_difference(aligned, aligned_labels, rows=False, centre=centre))
    axes = []
    for name, s, c in zip(("major", "minor"), shape, colour):
        axes.append({"axis": name, "shape_non_overlap": round(s, 4), "colour_difference": round(c, 4),
                     "asymmetric_in_shape": s >= SHAPE_ASYMMETRY, "asymmetric_in_colour": c >= COLOUR_ASYMMETRY})
        axes[-1]["asymmetric"] = axes[-1]["asymmetric_in_shape"] or axes[-1]["asymmetric_in_colour"]
    return Criterion(
        name="Asymmetry", score=sum(a["asymmetric"] for a in axes), low=0, high=2, weight=WEIGHTS["asymmetry"],
        numbers={"axes": axes, "shape_threshold": SHAPE_ASYMMETRY, "colour_threshold": COLOUR_ASYMMETRY},
        definition=("Axes (of the two principal axes through the lesion's centroid) about which the lesion is "
                    "asymmetric. An axis counts when the shape is asymmetric (the share of the lesion and its mirror "
                    f"image that does not overlap is at least {SHAPE_ASYMMETRY:.2f}) or the colours are (the two halves' "
                    f"shares of the six ABCD colours differ by a total-variation distance of at least {COLOUR_ASYMMETRY:.2f}). "
                    "Structures are not assessed."),
    )  # fmt: skip


def half_difference(aligned: np.ndarray, labels: np.ndarray, rows: bool, centre: int) -> float:
    """Total-variation distance between the colour make-up of the two halves on either side of an axis of the
    principal frame (``rows``: the major axis, a horizontal line at row ``centre``; else the minor, a column)."""
    if rows:
        first, second = (aligned[:centre], labels[:centre]), (aligned[centre + 1:], labels[centre + 1:])
    else:
        first, second = (aligned[:, :centre], labels[:, :centre]), (aligned[:, centre + 1:], labels[:, centre + 1:])
    if not first[0].any() or not second[0].any():
        return 1.0
    p, q = shares(first[1], first[0]), shares(second[1], second[0])
    return 0.5 * sum(abs(p[k] - q[k]) for k in p)


# ----------------------------------------------------------------------------------------------- border
def border_criterion(lab: np.ndarray, mask: np.ndarray) -> Criterion:
    profiles, radius = border_profiles(lab[..., 0], mask)
    edge = int(round(STEEP_SPAN / PROFILE_BIN))  # bins between the two ends of the steepest stretch
    rows = []
    for k, profile in enumerate(profiles):
        if np.isnan(profile).any():
            rows.append({"segment": k + 1, "abrupt": False, "judged": False})
            continue
        step = float(profile[-2:].mean() - profile[:2].mean())  # skin beyond the outline − lesion within it
        steepest = float(max(np.sign(step) * (profile[i + edge] - profile[i]) for i in range(len(profile) - edge)))
        share = steepest / abs(step) if abs(step) >= MIN_STEP else 0.0
        rows.append({"segment": k + 1, "step": round(step, 2), "steepest_share": round(share, 3), "judged": True,
                     "abrupt": abs(step) >= MIN_STEP and share >= ABRUPT_SHARE})
    return Criterion(
        name="Border", score=sum(r["abrupt"] for r in rows), low=0, high=8, weight=WEIGHTS["border"],
        numbers={"segments": rows, "radius_px": round(radius, 1), "profile_span": PROFILE_SPAN, "steep_span": STEEP_SPAN,
                 "abrupt_share": ABRUPT_SHARE, "min_step": MIN_STEP,
                 "not_judged": [r["segment"] for r in rows if not r["judged"]]},
        definition=(f"Of {SEGMENTS} pie segments of 45° around the centroid (from the major axis), those with an abrupt "
                    "cut-off of pigment: across the outline, from "
                    f"{PROFILE_SPAN:.0%} of the lesion's radius inside to {PROFILE_SPAN:.0%} outside, the lightness (median "
                    f"CIELAB L* in steps of {PROFILE_BIN:.0%} of the radius) changes by at least {MIN_STEP:g} L*, and at least "
                    f"{ABRUPT_SHARE:.0%} of that change happens within {STEEP_SPAN:.0%} of the radius. A pigment that fades "
                    "out gradually spreads its change wider. A segment whose skin lies outside the image cannot be judged "
                    "and does not count."),
    )  # fmt: skip


def border_profiles(lightness: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Per pie segment, the median lightness in bins of signed distance to the outline (negative inside), from
    −``PROFILE_SPAN`` to +``PROFILE_SPAN`` of the equivalent radius: (segments, bins), NaN where a bin holds fewer
    than ``MIN_BIN_PIXELS``; and the radius in pixels."""
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)  # lesion pixels: distance to the skin
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    radius = equivalent_diameter(mask) / 2
    signed = np.where(mask, 0.5 - inside, outside - 0.5) / radius  # in radii; the outline lies at 0
    (cx, cy), angle, _ = principal_axes(mask)
    bins = int(round(2 * PROFILE_SPAN / PROFILE_BIN))
    where = np.abs(signed) < PROFILE_SPAN
    ys, xs = np.nonzero(where)  # the band around the outline: the only pixels profiled
    segment = ((np.degrees(np.arctan2(ys - cy, xs - cx)) - angle) % 360 // (360 / SEGMENTS)).astype(np.int64)
    cell = segment * bins + np.minimum(((signed[where] + PROFILE_SPAN) / PROFILE_BIN).astype(np.int64), bins - 1)
    values = lightness[where]
    profiles = np.full(SEGMENTS * bins, np.nan)
    order = np.argsort(cell, kind="stable")
    cells, starts, counts = np.unique(cell[order], return_index=True, return_counts=True)
    for c, start, count in zip(cells, starts, counts):
        if count >= MIN_BIN_PIXELS:
            profiles[c] = np.median(values[order[start:start + count]])
    return profiles.reshape(SEGMENTS, bins), radius
