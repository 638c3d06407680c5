"""One phantom: skin, lesion, optional planted shortcut, nuisances, metadata.

Randomness: ``np.random.SeedSequence(seed)`` is split into five independent streams (metadata, skin,
lesion, shortcut ink, nuisances). So the seed alone fixes the skin, the nuisances and the ink
geometry, and changing one knob changes only its part: ``Shortcut(mode="always")`` and
``Shortcut(mode="absent")`` give the same image up to the ink (a counterfactual pair), and two labels
with one seed share skin and nuisances. No global random state is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dermfuse import vocab
from dermfuse.data.phantom.lesions import paint_lesion
from dermfuse.data.phantom.metadata import sample_metadata
from dermfuse.data.phantom.skin import apply_nuisances, marker_ink, skin_background

SHORTCUT_MODES = ("present", "absent", "reversed", "always")


@dataclass(frozen=True)
class Shortcut:
    """A planted background bias: violet skin-marker ink near the lesion, correlated with a class.

    Real dermoscopy datasets have this bias (surgeons mark suspicious lesions before excision), and
    classifiers learn it. Modes, with p = ``strength``:

    - ``present``: P(ink | target class) = p, P(ink | any other class) = 1 − p  (training bias);
    - ``reversed``: the correlation flipped, P(ink | target) = 1 − p, P(ink | other) = p; with
      p = 1 ink is on non-target images only (a test set that punishes the shortcut);
    - ``absent``: never any ink;
    - ``always``: ink on every image (with ``absent``, a counterfactual pair for the same seeds).

    Ink is drawn on the skin only, never on the lesion mask, so it carries no lesion information.
    """

    target: str = "mel"
    strength: float = 0.9
    mode: str = "present"

    def __post_init__(self) -> None:
        if self.target not in vocab.HAM10000_CLASSES:
            raise ValueError(f"shortcut target {self.target!r}: expected one of {', '.join(vocab.HAM10000_CLASSES)}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"shortcut strength {self.strength} must be in [0, 1]")
        if self.mode not in SHORTCUT_MODES:
            raise ValueError(f"shortcut mode {self.mode!r}: expected one of {', '.join(SHORTCUT_MODES)}")

    def ink_probability(self, label: str) -> float:
        """P(ink | label) under this shortcut."""
        on_target = label == self.target
        return {
            "present": self.strength if on_target else 1.0 - self.strength,
            "reversed": 1.0 - self.strength if on_target else self.strength,
            "absent": 0.0,
            "always": 1.0,
        }[self.mode]

    @classmethod
    def parse(cls, text: str) -> "Shortcut":
        """``"mel:0.9"`` or ``"mel:0.9:reversed"`` (target:strength[:mode]) → Shortcut."""
        parts = text.split(":")
        if not 2 <= len(parts) <= 3:
            raise ValueError(f"shortcut {text!r}: write TARGET:STRENGTH[:MODE], e.g. mel:0.9 or mel:1:reversed")
        try:
            strength = float(parts[1])
        except ValueError:
            raise ValueError(f"shortcut {text!r}: strength {parts[1]!r} is not a number") from None
        return cls(parts[0], strength, parts[2] if len(parts) == 3 else "present")


@dataclass
class Phantom:
    """A generated dermoscopy-like image with its exact truth."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) bool, the lesion as drawn
    label: str  # vocab.HAM10000_CLASSES
    age: float | None  # years, HAM10000 5-year bins; None = missing
    sex: str  # vocab.SEXES
    site: str  # vocab.SITES (unified)
    localization: str  # the raw HAM10000 localization the site came from
    meta: dict = field(default_factory=dict)  # what was drawn: skin tone, criteria, nuisances, ink


def generate_phantom(
    label: str,
    seed: int,
    size: int = 256,
    difficulty: float = 0.5,
    shortcut: Shortcut | None = None,
    nuisances: bool = True,
) -> Phantom:
    """Generate one phantom of class ``label``; the same arguments always give the same bytes.

    ``nuisances=False`` skips hair, bubbles, ruler, vignette, frame, blur, noise and JPEG: the
    clean render of skin, lesion and ink (for tests and figures).
    """
    if label not in vocab.HAM10000_CLASSES:
        raise ValueError(f"unknown label {label!r}: expected one of {', '.join(vocab.HAM10000_CLASSES)}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty {difficulty} must be in [0, 1]")
    if size < 32:
        raise ValueError(f"size {size} is too small: use at least 32 pixels")
    meta_rng, skin_rng, lesion_rng, ink_rng, nuisance_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    age, sex, localization = sample_metadata(label, meta_rng)

    img, skin, tone = skin_background(skin_rng, size)
    lesion, drawn = paint_lesion(img, skin, label, lesion_rng, difficulty)
    ink_pixels = 0
    if shortcut is not None and ink_rng.random() < shortcut.ink_probability(label):
        ink_pixels = marker_ink(lesion.img, ink_rng, lesion.mask)
    meta = {
        "seed": seed,
        "difficulty": difficulty,
        "skin_tone": round(tone, 4),
        "fitzpatrick": 1 + min(5, int(tone * 6)),
        "area_fraction": round(float(lesion.mask.mean()), 4),
        "criteria": drawn,
        "shortcut_ink": ink_pixels > 0,
        "ink_pixels": ink_pixels,
    }
    if nuisances:
        image, present = apply_nuisances(lesion.img, nuisance_rng, difficulty, lesion.extent)
        meta["nuisances"] = present
    else:
        image = (np.clip(lesion.img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        meta["nuisances"] = {}
    site = vocab.HAM10000_SITE_MAP[localization]
    return Phantom(image, lesion.mask, label, age, sex, site, localization, meta)
