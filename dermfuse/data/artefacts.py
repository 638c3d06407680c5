"""Real dermoscopy artefacts (air bubbles, rulers, ink markings) pasted into an image, to test for shortcuts.

The templates are those of Katsch, Rinner & Tschandl, "Comparison of convolutional neural network
architectures for robustness against common artefacts in dermatoscopic images", Dermatol Pract Concept
2022;12(3):e2022126, cut from HAM10000 images (Tschandl et al., Sci Data 2018). Licence CC BY-NC 4.0: cite
the paper wherever they are used. They live outside the repository (``../shared/data/artefacts`` or
``$DERMFUSE_ARTEFACTS``: a ``meta.json`` and ``src/<image id>/*.png``) and are never copied into it.

How they were made and are meant to be pasted (their README), and how this module does it:

- *Difference templates* (``"preprocessor": "difference"``: bubbles and rulers): a region with the artefact
  and the same region repaired by hand (Photoshop's content-aware fill), stored as a ``*with*`` / ``*without*``
  PNG pair. The channel-wise difference *with − without* is the artefact; it is **added** to the new image.
- *Markings*: the ink isolated from the skin on white, one PNG, used as a stamp. The README does not say how a
  stamp is blended; we **multiply** (white leaves the skin as it is, ink darkens it as ink on skin does) *(ours)*.
- Placement, as the README describes it: bubbles come several at a time, less often on the lesion when its
  mask is known; circle markings are centred around the lesion, spot markings lie anywhere (off the lesion
  when the mask is known); horizontal rulers cross the middle of the image (they may overlap the lesion),
  vertical ones lie along the left or right edge; positions, counts and sizes vary at random.
- Scale: the templates keep the resolution of HAM10000's 600×450 originals; they are pasted at the image's
  short side / 450 (the downsampled 256×256 crops of the 450×450 centre get 0.57) *(ours)*.

A template's *footprint* is where it changes pixels (a difference above ``DIFFERENCE_FLOOR`` in some channel,
or ink darker than ``INK_FLOOR`` below white); outside it the image is left exactly as it was. Everything
random comes from the ``numpy.random.Generator`` passed in, so an insertion is reproducible from its seed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

KINDS = ("bubble", "marking", "ruler")
TEMPLATES_ENV = "DERMFUSE_ARTEFACTS"
DEFAULT_FOLDER = Path(__file__).resolve().parents[3] / "shared" / "data" / "artefacts"
CITATION = ("Katsch F, Rinner C, Tschandl P. Comparison of convolutional neural network architectures for robustness "
            "against common artefacts in dermatoscopic images. Dermatol Pract Concept 2022;12(3):e2022126 (templates "
            "CC BY-NC 4.0)")
SOURCE_SIDE = 450  # the short side of the HAM10000 originals the templates were cut from
DIFFERENCE_FLOOR = 2  # 8-bit levels: smaller with − without differences are rounding, not artefact
INK_FLOOR = 12  # 8-bit levels below white: paler stamp pixels are paper, not ink
BUBBLES = (3, 9)  # bubbles per image: at least, below
SPOTS = (1, 3)  # spot markings per image: at least, below
SIZE_JITTER = 0.15  # each paste's scale varies by up to this share
ON_LESION_KEPT = 0.2  # with a known mask: a bubble or spot drawn onto the lesion is kept this often, else redrawn
MAX_ON_LESION = 0.05  # "onto the lesion": more than this share of its footprint on the lesion


def templates_folder(folder: str | os.PathLike | None = None) -> Path:
    """``folder``, else ``$DERMFUSE_ARTEFACTS``, else ``../shared/data/artefacts`` beside the repository."""
    return Path(folder or os.environ.get(TEMPLATES_ENV) or DEFAULT_FOLDER)


@dataclass(frozen=True)
class ArtefactTemplate:
    """One artefact instance: ``values`` (h, w, 3) float32 are the difference to add (``blend="add"``) or the
    transmittance in [0, 1] to multiply by (``blend="multiply"``); neutral (0 or 1) outside the footprint."""

    kind: str
    subclass: str | None
    source: str  # the HAM10000 image it was cut from
    file: str
    blend: str
    values: np.ndarray = field(repr=False)

    @property
    def neutral(self) -> float:
        return 0.0 if self.blend == "add" else 1.0

    @property
    def footprint(self) -> np.ndarray:
        """Where the template changes pixels: bool (h, w)."""
        return np.abs(self.values - self.neutral).max(axis=-1) > 0


def load_templates(folder: str | os.PathLike | None = None, kinds=KINDS) -> list[ArtefactTemplate]:
    """Every template of ``kinds`` described by ``<folder>/meta.json``; a clear error if the folder is not one."""
    folder = templates_folder(folder)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown artefact kinds {unknown}: expected some of {', '.join(KINDS)}")
    meta = folder / "meta.json"
    if not meta.is_file():
        raise FileNotFoundError(f"no artefact templates at {folder} (no meta.json): point --artefacts or ${TEMPLATES_ENV} "
                                f"at the folder of Katsch et al.'s templates (meta.json and src/)")
    templates = []
    for entry in json.loads(meta.read_text(encoding="utf-8"))["artefacts"]:
        if entry["class"] not in kinds:
            continue
        instance_folder = folder / entry["artefact_folder"]
        files = sorted(instance_folder.glob("*.png"))
        if not files:
            raise FileNotFoundError(f"{instance_folder} holds no template PNG, though {meta} lists it")
        if entry.get("preprocessor") == "difference":
            for with_file in [f for f in files if re.search(r"_with(_|\.|$)", f.name)]:
                without_file = with_file.with_name(with_file.name.replace("_with", "_without"))
                if not without_file.is_file():
                    raise FileNotFoundError(f"{with_file} has no repaired twin {without_file.name}")
                difference = _pixels(with_file) - _pixels(without_file)
                difference[np.abs(difference).max(axis=-1) <= DIFFERENCE_FLOOR] = 0
                templates.append(ArtefactTemplate(entry["class"], entry.get("subclass"), entry["name"], with_file.name,
                                                  "add", difference))
        else:
            for stamp_file in files:
                stamp = _pixels(stamp_file) / 255.0
                stamp[(1.0 - stamp.min(axis=-1)) * 255 <= INK_FLOOR] = 1.0
                templates.append(ArtefactTemplate(entry["class"], entry.get("subclass"), entry["name"], stamp_file.name,
                                                  "multiply", stamp.astype(np.float32)))
    if not templates:
        raise ValueError(f"{meta} describes no template of the kinds {list(kinds)}")
    return templates


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def transform(values: np.ndarray, scale: float, turns: int = 0, flip: bool = False, neutral: float = 0.0) -> np.ndarray:
    """A template's values rescaled (area interpolation), turned by ``turns`` × 90° and optionally mirrored;
    values within rounding of neutral are set to neutral, so the footprint stays exact."""
    height, width = values.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out = cv2.resize(values, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.rot90(out, turns)
    out = out[:, ::-1] if flip else out
    limit = 0.5 if neutral == 0.0 else 0.5 / 255
    out = np.where(np.abs(out - neutral).max(axis=-1, keepdims=True) < limit, neutral, out)
    return np.ascontiguousarray(out, dtype=np.float32)


def paste(image: np.ndarray, values: np.ndarray, blend: str, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (h, w, 3; from :func:`transform`) pasted with its top-left corner at (top, left), clipped to the
    image; returns the new uint8 image and the bool footprint of what changed (H, W)."""
    if blend not in ("add", "multiply"):
        raise ValueError(f"unknown blend {blend!r}: expected add or multiply")
    out = np.array(image, dtype=np.uint8, copy=True)
    footprint = np.zeros(out.shape[:2], bool)
    height, width = out.shape[:2]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + values.shape[0], height), min(left + values.shape[1], width)
    if y0 >= y1 or x0 >= x1:
        return out, footprint
    part = values[y0 - top:y1 - top, x0 - left:x1 - left]  # (h', w', 3)
    region = out[y0:y1, x0:x1].astype(np.float32)
    changed = region + part if blend == "add" else region * part
    inside = np.abs(part - (0.0 if blend == "add" else 1.0)).max(axis=-1) > 0
    region[inside] = changed[inside]
    out[y0:y1, x0:x1] = np.clip(np.round(region), 0, 255).astype(np.uint8)
    footprint[y0:y1, x0:x1] = inside
    return out, footprint


class ArtefactInserter:
    """``inserter(image, lesion_mask, rng) → (image with one artefact of ``kind``, its footprint)``.

    ``image``: uint8 RGB (H, W, 3); ``lesion_mask``: bool (H, W) or ``None`` (then the lesion is taken to be
    the image centre); ``rng``: a ``numpy.random.Generator`` or an int seed. See the module docstring for
    the placement rules.
    """

    def __init__(self, kind: str = "marking", folder: str | os.PathLike | None = None,
                 templates: list[ArtefactTemplate] | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown artefact kind {kind!r}: expected one of {', '.join(KINDS)}")
        self.kind = kind
        self.templates = [t for t in (templates or load_templates(folder, (kind,))) if t.kind == kind]
        if not self.templates:
            raise ValueError(f"no {kind} template among those given")

    def __call__(self, image: np.ndarray, lesion_mask: np.ndarray | None = None, rng=None) -> tuple[np.ndarray, np.ndarray]:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
        if lesion_mask is not None and np.asarray(lesion_mask).shape != image.shape[:2]:
            raise ValueError(f"lesion mask {np.asarray(lesion_mask).shape} and image {image.shape[:2]} differ in size")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        lesion = None if lesion_mask is None or not np.asarray(lesion_mask).any() else np.asarray(lesion_mask, bool)
        placements = getattr(self, f"_{self.kind}")(image.shape[:2], lesion, rng)
        footprint = np.zeros(image.shape[:2], bool)
        for template, values, top, left in placements:
            image, changed = paste(image, values, template.blend, top, left)
            footprint |= changed
        return image, footprint

    # --- placement per kind: a list of (template, transformed values, top, left) -----------------------------

    def _draw(self, subclass: str | None, rng: np.random.Generator) -> ArtefactTemplate:
        pool = [t for t in self.templates if subclass is None or t.subclass == subclass] or self.templates
        return pool[int(rng.integers(len(pool)))]

    @staticmethod
    def _scale(shape, rng) -> float:
        return min(shape) / SOURCE_SIDE * float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER))

    def _scattered(self, shape, lesion, rng, count: int, subclass: str | None = None, turn: bool = True):
        """``count`` templates at random centres; with a lesion mask, one drawn onto it is usually redrawn."""
        height, width = shape
        placed = []
        for _ in range(count):
            template = self._draw(subclass, rng)
            values = transform(template.values, self._scale(shape, rng), int(rng.integers(4)) if turn else 0,
                               bool(rng.integers(2)), template.neutral)
            for _attempt in range(20):
                top = int(rng.integers(height)) - values.shape[0] // 2
                left = int(rng.integers(width)) - values.shape[1] // 2
                if lesion is None or _on_lesion(values, template.neutral, top, left, lesion) <= MAX_ON_LESION \
                        or rng.random() < ON_LESION_KEPT:
                    break
            placed.append((template, values, top, left))
        return placed

    def _bubble(self, shape, lesion, rng):
        return self._scattered(shape, lesion, rng, int(rng.integers(*BUBBLES)))

    def _marking(self, shape, lesion, rng):
        if rng.random() < 0.5 and any(t.subclass == "circle" for t in self.templates):
            template = self._draw("circle", rng)
            values = transform(template.values, self._scale(shape, rng), int(rng.integers(4)), bool(rng.integers(2)),
                               template.neutral)
            cy, cx = _centre(shape, lesion)
            jitter = 0.05 * min(shape)
            cy, cx = cy + rng.uniform(-jitter, jitter), cx + rng.uniform(-jitter, jitter)
            return [(template, values, int(round(cy - values.shape[0] / 2)), int(round(cx - values.shape[1] / 2)))]
        return self._scattered(shape, lesion, rng, int(rng.integers(*SPOTS)), subclass="spot")

    def _ruler(self, shape, lesion, rng):
        height, width = shape
        vertical = rng.random() < 0.5 and any(t.subclass == "vertical" for t in self.templates)
        template = self._draw("vertical" if vertical else "horizontal", rng)
        values = transform(template.values, self._scale(shape, rng), 1 if vertical else 0, bool(rng.integers(2)),
                           template.neutral)  # the vertical ones are stored lying down: stood up here
        if vertical:  # along the left or right edge, shifted up or down
            band = values.shape[1]
            left = int(rng.integers(0, max(1, width // 10))) if rng.random() < 0.5 else width - band - int(rng.integers(0, max(1, width // 10)))
            top = int(rng.integers(min(0, height - values.shape[0]), max(1, height - values.shape[0]) + 1))
        else:  # across the middle of the image
            top = int(round(rng.uniform(0.35, 0.75) * height - values.shape[0] / 2))
            left = int(rng.integers(min(0, width - values.shape[1]), max(1, width - values.shape[1]) + 1))
        return [(template, values, top, left)]


def _on_lesion(values: np.ndarray, neutral: float, top: int, left: int, lesion: np.ndarray) -> float:
    """The share of a placed template's footprint that lies on the lesion (of the part inside the image)."""
    footprint = np.abs(values - neutral).max(axis=-1) > 0
    height, width = lesion.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + footprint.shape[0], height), min(left + footprint.shape[1], width)
    if y0 >= y1 or x0 >= x1:
        return 0.0
    inside = footprint[y0 - top:y1 - top, x0 - left:x1 - left]
    return float((inside & lesion[y0:y1, x0:x1]).sum() / max(inside.sum(), 1))


def _centre(shape, lesion: np.ndarray | None) -> tuple[float, float]:
    if lesion is None:
        return shape[0] / 2, shape[1] / 2
    ys, xs = np.nonzero(lesion)
    return float(ys.mean()), float(xs.mean())
