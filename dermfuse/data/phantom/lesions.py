"""The seven HAM10000 classes as recipes of textbook dermoscopic criteria, and the difficulty knob.

| class | shape | criteria painted |
| --- | --- | --- |
| nv | symmetric round/oval, smooth border | one or two browns arranged radially, regular network (or regular globules) fading at the rim |
| mel | asymmetric, irregular border | ≥ 3 colours (light/dark brown + black, blue-grey, red, regression white), blue-white veil, atypical network, irregular eccentric dots/globules, streaks |
| bcc | mildly irregular | pinkish translucent ground, no network, arborising vessels, blue-grey ovoid nests, ulceration |
| akiec | irregular, blurred border | pink-red (strawberry) ground with follicular openings, white-yellow scale, crust, glomerular vessels |
| bkl | sharp border | waxy yellowish brown, fissures/ridges, milia-like cysts, comedo-like openings |
| df | small, round | central white scar-like patch, fine delicate peripheral network, soft rim |
| vasc | small, well demarcated | red/purple/blue lacunae separated by whitish septa |

``difficulty`` d ∈ [0, 1] blurs the classes in four ways, all sampled per image: (1) the class's own
criteria are weaker (strength 1 − d·U(0, 0.8)) and optional ones rarer; (2) with probability ~0.6·d
one criterion is borrowed from a clinically confusable class (a nevus with a blue-grey blotch or
irregular dots, a keratosis with a network, a pigmented BCC, ...), a second one with ~0.25·d; (3) with
probability 0.5·d the outline is mixed toward a confusable class's (a nearly symmetric melanoma,
an asymmetric nevus) and the ground colour partly taken from it; (4) colours are jittered more.
Nuisances also grow with d (see ``skin.py``). At d = 0 every class is prototypical.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dermfuse import vocab
from dermfuse.data.phantom import criteria as cr
from dermfuse.data.phantom.paint import smoothstep
from dermfuse.data.phantom.shape import Lesion, ShapeParams, new_lesion

# Per-class ranges of area fraction, asymmetry, irregularity, elongation.
SHAPE_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "nv": ((0.06, 0.38), (0.0, 0.03), (0.0, 0.008), (0.0, 0.25)),
    "mel": ((0.12, 0.50), (0.12, 0.28), (0.025, 0.07), (0.0, 0.3)),
    "bcc": ((0.06, 0.35), (0.04, 0.14), (0.01, 0.03), (0.0, 0.3)),
    "akiec": ((0.08, 0.45), (0.05, 0.16), (0.02, 0.045), (0.0, 0.3)),
    "bkl": ((0.08, 0.45), (0.05, 0.18), (0.008, 0.03), (0.0, 0.35)),
    "df": ((0.05, 0.22), (0.0, 0.05), (0.0, 0.012), (0.0, 0.3)),
    "vasc": ((0.05, 0.30), (0.02, 0.1), (0.0, 0.015), (0.0, 0.35)),
}

# Which classes each class is confused with, and how often (clinically plausible look-alikes).
CONFUSABLE: dict[str, dict[str, float]] = {
    "nv": {"mel": 0.5, "bkl": 0.2, "df": 0.2, "bcc": 0.1},
    "mel": {"nv": 0.5, "bkl": 0.25, "bcc": 0.1, "vasc": 0.15},
    "bcc": {"mel": 0.3, "akiec": 0.3, "nv": 0.2, "bkl": 0.2},
    "akiec": {"bkl": 0.4, "bcc": 0.3, "mel": 0.2, "vasc": 0.1},
    "bkl": {"mel": 0.35, "akiec": 0.25, "nv": 0.3, "bcc": 0.1},
    "df": {"nv": 0.5, "bkl": 0.2, "mel": 0.2, "vasc": 0.1},
    "vasc": {"mel": 0.4, "bcc": 0.2, "akiec": 0.2, "nv": 0.2},
}


def _nv_ground(les: Lesion, s: float) -> None:
    centre, rim = les.rng.uniform(0.45, 0.75), les.rng.uniform(0.1, 0.3) * les.rng.choice((-1, 1))
    field = cr.radial_field(les, cr.pigment(les, centre), cr.pigment(les, centre - rim))
    cr.base(les, field, core=0.95, edge=0.45, fade=0.25)


def _mel_ground(les: Lesion, s: float) -> None:
    light, dark = cr.pigment(les, les.rng.uniform(0.3, 0.5)), cr.pigment(les, les.rng.uniform(0.6, 0.8))
    cr.base(les, light, core=0.95, edge=0.6, fade=0.1, texture=0.12)
    cr.blotch(les, dark, s, rho_range=(0.2, 0.7), reach=les.rng.uniform(0.35, 0.6))


def _bcc_ground(les: Lesion, s: float) -> None:
    cr.base(les, cr.colour(les, cr.PINK), core=0.8, edge=0.5, fade=0.3, texture=0.04)


def _akiec_ground(les: Lesion, s: float) -> None:
    cr.base(les, cr.colour(les, cr.STRAWBERRY), core=0.85, edge=0.5, fade=0.35, texture=0.1)


def _bkl_ground(les: Lesion, s: float) -> None:
    cr.base(les, cr.pigment(les, les.rng.uniform(0.35, 0.65)) * (1.06, 1.0, 0.82), core=0.97, edge=0.92, fade=0.04,
            texture=0.15)  # fmt: skip


def _df_ground(les: Lesion, s: float) -> None:
    field = cr.radial_field(les, cr.colour(les, (0.88, 0.70, 0.64)), cr.pigment(les, 0.3), 0.2, 0.7)
    cr.base(les, field, core=0.8, edge=0.3, fade=0.4)


def _vasc_ground(les: Lesion, s: float) -> None:
    cr.base(les, cr.colour(les, (0.90, 0.66, 0.72)), core=0.95, edge=0.95, fade=0.05, texture=0.05)


GROUNDS: dict[str, Callable[[Lesion, float], None]] = {
    "nv": _nv_ground, "mel": _mel_ground, "bcc": _bcc_ground, "akiec": _akiec_ground,
    "bkl": _bkl_ground, "df": _df_ground, "vasc": _vasc_ground,
}  # fmt: skip


def _regular_network(les: Lesion, s: float) -> None:
    envelope = 1.0 - 0.8 * smoothstep(0.6, 1.0, les.rho)
    cr.pigment_network(les, cr.pigment(les, 0.95), 0.85 * s, les.rng.uniform(8, 11), envelope=envelope)


def _regular_globules(les: Lesion, s: float) -> None:
    cr.regular_globules(les, cr.pigment(les, 0.8), 0.85 * s, les.rng.uniform(12, 16), les.rng.uniform(2.5, 3.5))


def _third_colour(les: Lesion, s: float) -> None:
    """One of black, blue-grey, red or regression white, in an eccentric blotch."""
    which = les.rng.integers(4)
    if which == 3:
        cr.regression(les, s)
    else:
        rgb = (cr.BLACK, cr.BLUE_GREY, (0.78, 0.32, 0.30))[which]
        cr.blotch(les, rgb, 0.85 * s, rho_range=(0.1, 0.8), reach=les.rng.uniform(0.2, 0.4))


def _atypical_network(les: Lesion, s: float) -> None:
    cr.pigment_network(les, cr.pigment(les, 0.95), 0.9 * s, les.rng.uniform(8, 12), line=0.1,
                       irregular=les.rng.uniform(0.6, 1.0))  # fmt: skip


def _irregular_dots(les: Lesion, s: float) -> None:
    rgb = cr.BLACK if les.rng.random() < 0.6 else cr.pigment(les, 0.9)
    cr.dots(les, rgb, s, int(les.rng.integers(10, 30)), les.rng.uniform(1.5, 3.0), (0.5, 1.0),
            cluster=les.rng.uniform(0.2, 0.45), size_spread=0.7)  # fmt: skip


def _veil(les: Lesion, s: float) -> None:
    cr.blue_white_veil(les, s)


def _streaks(les: Lesion, s: float) -> None:
    cr.streaks(les, cr.pigment(les, 0.9), 0.9 * s, int(les.rng.integers(5, 12)))


def _arborising(les: Lesion, s: float) -> None:
    cr.arborising_vessels(les, s, trees=int(les.rng.integers(2, 5)))


def _nests(les: Lesion, s: float) -> None:
    cr.ovoid_nests(les, s, count=int(les.rng.integers(2, 7)))


def _ulcer(les: Lesion, s: float) -> None:
    cr.ulceration(les, s)


def _strawberry(les: Lesion, s: float) -> None:
    cr.follicular_openings(les, s, les.rng.uniform(9, 13))


def _scale(les: Lesion, s: float) -> None:
    cr.surface_scale(les, s, les.rng.uniform(0.15, 0.4))


def _crust(les: Lesion, s: float) -> None:
    cr.crust(les, s)


def _glomerular(les: Lesion, s: float) -> None:
    cr.glomerular_vessels(les, s, clusters=int(les.rng.integers(2, 5)))


def _fissures(les: Lesion, s: float) -> None:
    cr.fissures(les, cr.pigment(les, 0.85), s)


def _milia(les: Lesion, s: float) -> None:
    cr.milia_like_cysts(les, s, int(les.rng.integers(5, 16)))


def _comedos(les: Lesion, s: float) -> None:
    cr.comedo_like_openings(les, s, int(les.rng.integers(4, 12)))


def _white_patch(les: Lesion, s: float) -> None:
    cr.central_white_patch(les, s, les.rng.uniform(0.35, 0.55))


def _peripheral_network(les: Lesion, s: float) -> None:
    envelope = smoothstep(0.3, 0.55, les.rho) * (1.0 - 0.6 * smoothstep(0.85, 1.0, les.rho))
    cr.pigment_network(les, cr.pigment(les, 0.6), 0.7 * s, les.rng.uniform(5.5, 7.0), line=-0.05, envelope=envelope)


def _lacunae(les: Lesion, s: float) -> None:
    cr.lacunae(les, s, spacing=les.rng.uniform(9, 15))


# class -> (criterion name, painter, probability at difficulty 0); painted in this order.
RECIPES: dict[str, tuple[tuple[str, Callable[[Lesion, float], None], float], ...]] = {
    "nv": (("regular_network", _regular_network, 0.8), ("regular_globules", _regular_globules, 0.2)),
    "mel": (
        ("atypical_network", _atypical_network, 0.75),
        ("third_colour", _third_colour, 1.0),
        ("fourth_colour", _third_colour, 0.5),
        ("blue_white_veil", _veil, 0.85),
        ("irregular_dots", _irregular_dots, 0.85),
        ("streaks", _streaks, 0.4),
    ),
    "bcc": (("ovoid_nests", _nests, 0.8), ("ulceration", _ulcer, 0.35), ("arborising_vessels", _arborising, 1.0)),
    "akiec": (
        ("strawberry_pattern", _strawberry, 0.8),
        ("glomerular_vessels", _glomerular, 0.7),
        ("scale", _scale, 1.0),
        ("crust", _crust, 0.4),
    ),
    "bkl": (
        ("fissures", _fissures, 0.85),
        ("comedo_like_openings", _comedos, 0.8),
        ("milia_like_cysts", _milia, 0.9),
    ),
    "df": (("peripheral_network", _peripheral_network, 1.0), ("central_white_patch", _white_patch, 1.0)),
    "vasc": (("lacunae", _lacunae, 1.0),),
}
assert set(RECIPES) == set(GROUNDS) == set(SHAPE_RANGES) == set(vocab.HAM10000_CLASSES)


def sample_shape(rng: np.random.Generator, label: str) -> ShapeParams:
    return ShapeParams(*(rng.uniform(lo, hi) for lo, hi in SHAPE_RANGES[label]))


def paint_lesion(
    img: np.ndarray, skin: np.ndarray, label: str, rng: np.random.Generator, difficulty: float
) -> tuple[Lesion, list[str]]:
    """Paint a lesion of class ``label`` on the skin image ``img`` (in place).

    Returns the lesion (its mask is the drawn region) and the criteria painted, borrowed ones
    prefixed with their source class (e.g. ``"mel:blue_white_veil"``).
    """
    d = difficulty
    confusable = CONFUSABLE[label]
    other = rng.choice(list(confusable), p=np.array(list(confusable.values())))
    shape = sample_shape(rng, label)
    mixed = rng.random() < 0.5 * d
    if mixed:
        shape = shape.mix(sample_shape(rng, other), rng.uniform(0.3, 0.8))
    les = new_lesion(img, skin, shape, rng)
    les.colour_jitter = 0.02 + 0.06 * d
    strength = 1.0 - d * rng.uniform(0.0, 0.8)
    drawn = []

    GROUNDS[label](les, strength)
    if mixed:
        original = les.img
        les.img = original.copy()
        GROUNDS[other](les, strength)
        les.img, borrowed_ground = original, les.img
        les.paint(borrowed_ground, np.full_like(les.rho, rng.uniform(0.2, 0.5)))
        drawn.append(f"{other}:shape_and_ground")

    recipe = RECIPES[label]
    chosen = [rng.random() < probability * (1.0 - 0.4 * d) for _, _, probability in recipe]
    if not any(chosen):  # keep at least the most typical criterion, however weak
        chosen[int(np.argmax([probability for _, _, probability in recipe]))] = True
    for (name, painter, _), paint in zip(recipe, chosen):
        if paint:
            painter(les, strength)
            drawn.append(name)
    for chance in (0.6 * d, 0.25 * d):
        if rng.random() < chance:
            source = rng.choice(list(confusable), p=np.array(list(confusable.values())))
            name, painter, _ = RECIPES[source][rng.integers(len(RECIPES[source]))]
            painter(les, rng.uniform(0.5, 1.0))
            drawn.append(f"{source}:{name}")
    return les, drawn
