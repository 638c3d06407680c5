"""Follow-up: how a lesion changed since a previous image of it (the E, evolution, that one image cannot show).

``compare(current, previous)`` takes two pipeline results (``Diagnosis``, each with its decoded image and
mask) and returns a :class:`FollowUp`: the alignment, the change in area, diameter, asymmetry, colours and
the model's scores, and a picture of both outlines over each image.

Alignment (previous → current), a similarity transform:

- **translation**: the masks' centroids are made to coincide;
- **scale**: the ratio of the image sizes (sqrt of the pixel counts). Both images are *assumed* to show the
  same field of view (same dermatoscope and magnification, as in digital follow-up): the scale cannot come
  from the masks (sqrt(area) would erase the very growth we measure), and no mm scale is known. A change in
  zoom between the two images therefore reads as growth or shrinkage; a warning says so when the area
  changes by more than ``LARGE_CHANGE``;
- **rotation**: the angle (searched every ``ROTATION_STEP``°) that best matches the two lesions' lightness
  patterns, as the normalised cross-correlation of CIELAB L* over the union of the two masks, both lesions
  first scaled to the same size for the search only. The principal axis alone cannot give it: its sign is
  ambiguous, and it is undefined for a round lesion.

Sizes are in pixels of the current image's frame (and as relative change): without a mm scale, nothing here
is in millimetres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from skimage.measure import regionprops

from .criteria import equivalent_diameter, srgb_to_linear
from .diagnosis import Diagnosis
from .render import line_width

ROTATION_STEP = 5  # degrees
MATCH_RADIUS = 32  # px: lesions are scaled to this equivalent radius for the rotation search
PATCH_SIDE = 5 * MATCH_RADIUS
LARGE_CHANGE = 0.5  # relative area change above which a change of zoom is suspected
POOR_MATCH = 0.3  # lightness correlation under which the two images may not show the same lesion
CURRENT_RGB, PREVIOUS_RGB = (0, 255, 120), (255, 140, 0)
ALIGNMENT = ("translation: centroids of the two masks; scale: ratio of the image sizes (both images assumed to show "
             f"the same field of view); rotation: searched every {ROTATION_STEP}° for the best normalised "
             "cross-correlation of CIELAB lightness over both lesions")
NO_MM_SCALE = ("Sizes are in pixels of the current image (and relative change): no millimetre scale is known, and the "
               "two images are assumed to be taken at the same magnification.")


@dataclass
class FollowUp:
    """The change from ``previous`` to ``current``: per-image numbers, their changes, the alignment and warnings.

    ``picture`` (H, W·2, 3 uint8: previous aligned | current, both outlines on each) is not part of
    :meth:`to_dict`.
    """

    current: dict
    previous: dict
    change: dict
    alignment: dict
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    picture: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {"current": self.current, "previous": self.previous, "change": self.change, "alignment": self.alignment,
                "notes": self.notes, "warnings": self.warnings}


def check_comparable(diagnosis: Diagnosis, which: str) -> None:
    """``ValueError`` in plain words when ``diagnosis`` cannot take part in a comparison (``which``: 'current' or
    'previous'), saying what to do."""
    other = "Use another image of the same lesion, taken earlier." if which == "previous" \
        else "Diagnose an assessable image that shows the lesion first."
    if diagnosis.image is None:
        raise ValueError(f"The {which} result has no image to compare (it was saved without its arrays).")
    if not diagnosis.assessable:
        raise ValueError(f"The {which} image is not assessable ({' '.join(diagnosis.reasons)}), so it cannot be "
                         f"compared. {other}")
    if not diagnosis.lesion_found:
        raise ValueError(f"No lesion was found in the {which} image, so there is nothing to compare. {other}")


def compare(current: Diagnosis, previous: Diagnosis) -> FollowUp:
    """How the lesion changed from ``previous`` to ``current`` (both from ``DermFusePipeline``, with images)."""
    check_comparable(current, "current")
    check_comparable(previous, "previous")
    if list(current.classes) != list(previous.classes):
        raise ValueError("The two images were diagnosed by different models: compare results of one model.")
    scale = math.sqrt(current.mask.size / previous.mask.size)
    rotation, match = best_rotation(current.image, current.mask, previous.image, previous.mask)
    transform = similarity(previous.mask, current.mask, rotation, scale)
    height, width = current.mask.shape
    aligned_mask = cv2.warpAffine(previous.mask.astype(np.uint8), transform, (width, height), flags=cv2.INTER_NEAREST) > 0
    aligned_image = cv2.warpAffine(previous.image, transform, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))
    now, before = lesion_numbers(current, 1.0), lesion_numbers(previous, scale)
    change = changes(now, before)
    change["overlap_iou"] = round(float((aligned_mask & current.mask).sum() / max(1, (aligned_mask | current.mask).sum())), 4)
    warnings = []
    if abs(change["area_percent"]) > 100 * LARGE_CHANGE:
        warnings.append(f"The lesion's area changed by {change['area_percent']:+.0f} %: check that both images were taken "
                        "at the same magnification; a change of zoom reads as growth or shrinkage.")
    if match < POOR_MATCH:
        warnings.append(f"The two lesions match poorly after alignment (lightness correlation {match:.2f} < {POOR_MATCH}): "
                        "check that both images show the same lesion.")
    return FollowUp(
        current=now, previous=before, change=change, warnings=warnings, notes=[NO_MM_SCALE],
        alignment={"method": ALIGNMENT, "rotation_deg": rotation, "scale": round(scale, 4),
                   "translation_px": [round(float(v), 1) for v in transform[:, 2]], "lightness_correlation": round(match, 3)},
        picture=comparison_picture(current.image, current.mask, aligned_image, aligned_mask),
    )  # fmt: skip


def lesion_numbers(diagnosis: Diagnosis, scale: float) -> dict:
    """Area, diameters, ABCD asymmetry and colours, and the scores of one image; lengths times ``scale`` (into the
    current image's pixels)."""
    mask = diagnosis.mask
    abcd = diagnosis.abcd or {}
    asymmetry, colours = abcd.get("asymmetry") or {}, abcd.get("colours") or {}
    return {
        "image_id": diagnosis.image_id,
        "area_px": round(float(mask.sum()) * scale**2, 1),
        "equivalent_diameter_px": round(equivalent_diameter(mask) * scale, 2),
        "greatest_diameter_px": round(float(regionprops(mask.astype(np.uint8))[0].feret_diameter_max) * scale, 2),
        "asymmetry": asymmetry.get("score"),
        "asymmetry_axes": [{k: a[k] for k in ("axis", "shape_non_overlap", "colour_difference")}
                           for a in asymmetry.get("numbers", {}).get("axes", [])],
        "colours": colours.get("numbers", {}).get("colours", []),
        "colour_count": colours.get("score"),
        "scores": diagnosis.scores(),
        "top_class": diagnosis.top_class,
    }


def changes(now: dict, before: dict) -> dict:
    """Current minus previous: relative size change in %, score and colour differences."""
    def percent(key: str) -> float:
        return round(100 * (now[key] - before[key]) / before[key], 2)

    return {
        "area_percent": percent("area_px"),
        "equivalent_diameter_percent": percent("equivalent_diameter_px"),
        "greatest_diameter_percent": percent("greatest_diameter_px"),
        "asymmetry": None if now["asymmetry"] is None or before["asymmetry"] is None else now["asymmetry"] - before["asymmetry"],
        "colour_count": None if now["colour_count"] is None or before["colour_count"] is None
        else now["colour_count"] - before["colour_count"],
        "colours_new": [c for c in now["colours"] if c not in before["colours"]],
        "colours_gone": [c for c in before["colours"] if c not in now["colours"]],
        "scores": {c: round(now["scores"][c] - before["scores"][c], 4) for c in now["scores"]},
        "top_class_changed": now["top_class"] != before["top_class"],
    }  # fmt: skip


# -------------------------------------------------------------------------------------------- alignment
def similarity(previous: np.ndarray, current: np.ndarray, rotation: float, scale: float) -> np.ndarray:
    """The 2×3 affine matrix previous → current: rotate by ``rotation``° and scale about the previous centroid,
    then move it onto the current centroid."""
    (px, py), (cx, cy) = centroid(previous), centroid(current)
    matrix = cv2.getRotationMatrix2D((px, py), rotation, scale)
    matrix[:, 2] += (cx - px, cy - py)
    return matrix


def centroid(mask: np.ndarray) -> tuple[float, float]:
    moments = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    return moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]


def lesion_patch(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB L* (float32) and the mask of the lesion scaled to equivalent radius ``MATCH_RADIUS`` and centred on a
    square of side ``PATCH_SIDE``."""
    factor = MATCH_RADIUS / (equivalent_diameter(mask) / 2)
    size = (max(1, round(mask.shape[1] * factor)), max(1, round(mask.shape[0] * factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    lightness = cv2.cvtColor(srgb_to_linear(small.astype(np.float32) / 255), cv2.COLOR_LRGB2Lab)[..., 0]
    x, y = centroid(mask)
    shift = np.float32([[1, 0, PATCH_SIDE / 2 - x * factor], [0, 1, PATCH_SIDE / 2 - y * factor]])
    patch = cv2.warpAffine(lightness, shift, (PATCH_SIDE, PATCH_SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return patch, cv2.warpAffine(small_mask, shift, (PATCH_SIDE, PATCH_SIDE), flags=cv2.INTER_NEAREST) > 0


def best_rotation(current_image: np.ndarray, current_mask: np.ndarray, previous_image: np.ndarray,
                  previous_mask: np.ndarray) -> tuple[float, float]:
    """(angle in degrees that turns the previous lesion onto the current one, as ``cv2.getRotationMatrix2D``
    takes it; the lightness correlation there)."""
    target, target_mask = lesion_patch(current_image, current_mask)
    source, source_mask = lesion_patch(previous_image, previous_mask)
    centre = (PATCH_SIDE / 2, PATCH_SIDE / 2)
    best = (0.0, -np.inf)
    for angle in range(0, 360, ROTATION_STEP):
        turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
        patch = cv2.warpAffine(source, turn, (PATCH_SIDE, PATCH_SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(source_mask.astype(np.uint8), turn, (PATCH_SIDE, PATCH_SIDE), flags=cv2.INTER_NEAREST) > 0
        region = mask | target_mask
        a, b = patch[region] - patch[region].mean(), target[region] - target[region].mean()
        score = float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))
        if score > best[1]:
            best = (float(angle), score)
    return best


# ---------------------------------------------------------------------------------------------- picture
def comparison_picture(current: np.ndarray, current_mask: np.ndarray, aligned: np.ndarray, aligned_mask: np.ndarray
                       ) -> np.ndarray:
    """Previous image aligned onto the current frame | current image, each with both outlines (previous orange,
    current green), side by side with a white gap."""
    thickness = line_width(current_mask.shape)
    outlined = []
    for picture in (aligned, current):
        out = np.ascontiguousarray(picture.copy())
        for mask, colour in ((aligned_mask, PREVIOUS_RGB), (current_mask, CURRENT_RGB)):
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, colour, thickness)
        outlined.append(out)
    gap = np.full((current.shape[0], max(4, current.shape[1] // 50), 3), 255, np.uint8)
    return np.concatenate([outlined[0], gap, outlined[1]], axis=1)
