"""The vocabularies every part of dermfuse shares: diagnoses, sexes, lesion sites.

One module so that readers, phantoms, models, the CLI and the app agree on every label and index.
Values follow ``design.md`` (HAM10000 / ISIC 2018 Task 3 and ISIC 2019 conventions).
"""

from __future__ import annotations

import math

# Diagnoses, in the order the models index them.
HAM10000_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
ISIC2018_CLASSES: tuple[str, ...] = HAM10000_CLASSES
ISIC2019_CLASSES: tuple[str, ...] = ("ak", "bcc", "bkl", "df", "mel", "nv", "scc", "vasc")

# Ground-truth CSV column of each class (ISIC 2018 Task 3 / ISIC 2019); read by name, never position.
CSV_COLUMN: dict[str, str] = {name: name.upper() for name in set(HAM10000_CLASSES) | set(ISIC2019_CLASSES)}

DIAGNOSIS_NAMES: dict[str, str] = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "ak": "Actinic keratosis",
    "scc": "Squamous cell carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion (solar lentigo, seborrhoeic keratosis, lichen-planus-like keratosis)",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion (angioma, angiokeratoma, pyogenic granuloma, haemorrhage)",
}

# Malignant or pre-malignant, so the app can flag them. akiec includes intraepithelial carcinoma.
MALIGNANT: frozenset[str] = frozenset({"akiec", "ak", "scc", "bcc", "mel"})

UNKNOWN = "unknown"

METADATA_FIELDS: tuple[str, ...] = ("age", "sex", "site")  # the patient data a model may learn from

SEXES: tuple[str, ...] = ("female", "male", UNKNOWN)

SITES: tuple[str, ...] = (
    "anterior torso",
    "posterior torso",
    "lateral torso",
    "torso",
    "upper extremity",
    "lower extremity",
    "head/neck",
    "palms/soles",
    "oral/genital",
    UNKNOWN,
)

# HAM10000 `localization` → unified site (general level).
HAM10000_SITE_MAP: dict[str, str] = {
    "scalp": "head/neck",
    "face": "head/neck",
    "ear": "head/neck",
    "neck": "head/neck",
    "chest": "anterior torso",
    "abdomen": "anterior torso",
    "back": "posterior torso",
    "trunk": "torso",
    "upper extremity": "upper extremity",
    "hand": "upper extremity",
    "lower extremity": "lower extremity",
    "foot": "lower extremity",
    "acral": "palms/soles",
    "genital": "oral/genital",
    "unknown": UNKNOWN,
}

MAX_AGE = 120.0


def _is_blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def normalize_sex(value) -> str:
    """Map a raw sex/gender value (blank → ``unknown``) to the vocabulary, or raise ``ValueError``."""
    if _is_blank(value):
        return UNKNOWN
    key = str(value).strip().lower()
    if key not in SEXES:
        raise ValueError(f"unknown sex {value!r}: expected one of {', '.join(SEXES)} (or blank)")
    return key


def normalize_site(value) -> str:
    """Map a unified or HAM10000 site (blank → ``unknown``) to the unified vocabulary, or raise."""
    if _is_blank(value):
        return UNKNOWN
    key = str(value).strip().lower()
    if key in SITES:
        return key
    if key in HAM10000_SITE_MAP:
        return HAM10000_SITE_MAP[key]
    raise ValueError(
        f"unknown lesion site {value!r}: expected one of {', '.join(SITES)} "
        f"or a HAM10000 localization ({', '.join(sorted(HAM10000_SITE_MAP))})"
    )


def normalize_age(value) -> float | None:
    """Return the age in years (blank → ``None``), or raise ``ValueError`` for an impossible age."""
    if _is_blank(value):
        return None
    try:
        age = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"age {value!r} is not a number: give years between 0 and {MAX_AGE:g}, or leave it blank") from None
    if not (0.0 <= age <= MAX_AGE):
        raise ValueError(f"age {age:g} is impossible: give years between 0 and {MAX_AGE:g}, or leave it blank")
    return age


def class_list(name: str) -> tuple[str, ...]:
    """The label list of a named label set: ``ham10000``, ``isic2018`` or ``isic2019``."""
    sets = {"ham10000": HAM10000_CLASSES, "isic2018": ISIC2018_CLASSES, "isic2019": ISIC2019_CLASSES}
    if name not in sets:
        raise ValueError(f"unknown label set {name!r}: expected one of {', '.join(sets)}")
    return sets[name]
