"""Per-class metadata of HAM10000 (age, sex, localization), kept in code as a small count table.

The phantom benchmark draws each image's metadata from the real per-class statistics of HAM10000, so
a metadata branch trained on phantoms learns the same priors it would learn on the real data (see the
real-data reference in ``../shared/data/README.md``: metadata alone reaches ~0.35 balanced accuracy).

The counts below were computed once with :func:`derive_metadata_stats` from the public
``HAM10000_metadata.csv`` (10,015 images) and are kept here so that users without that file get the
same phantoms; ``tests/test_data_phantom.py`` recomputes them from the CSV and checks they agree.
Counts are per image, not per lesion, because a classifier sees images. Age, sex and localization are
sampled independently given the class (their joint correlations are not modelled).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from dermfuse import vocab

AGE_BINS: tuple[int, ...] = tuple(range(0, 90, 5))  # HAM10000 ages: 0, 5, ..., 85
SEXES: tuple[str, ...] = vocab.SEXES  # female, male, unknown
# The 15 raw HAM10000 values, spelled out because the count table below is indexed by this order.
LOCALIZATIONS: tuple[str, ...] = (
    "scalp", "face", "ear", "neck", "chest", "abdomen", "back", "trunk",
    "upper extremity", "hand", "lower extremity", "foot", "acral", "genital", "unknown",
)  # fmt: skip
assert set(LOCALIZATIONS) == set(vocab.HAM10000_SITE_MAP), "vocab.HAM10000_SITE_MAP changed: update this table"

# class -> counts over AGE_BINS followed by the number of blank ages (19 numbers).
AGE_COUNTS: dict[str, tuple[int, ...]] = {
    "akiec": (0, 0, 0, 0, 0, 0, 1, 0, 9, 10, 19, 27, 58, 38, 56, 47, 37, 25, 0),
    "bcc": (0, 0, 0, 0, 1, 3, 4, 5, 23, 26, 27, 25, 35, 79, 85, 76, 73, 52, 0),
    "bkl": (5, 1, 0, 0, 0, 0, 6, 24, 46, 59, 87, 95, 131, 108, 183, 153, 98, 93, 10),
    "df": (0, 0, 0, 0, 0, 2, 4, 12, 9, 14, 18, 13, 9, 18, 4, 9, 3, 0, 0),
    "mel": (0, 1, 0, 0, 6, 16, 34, 36, 49, 74, 96, 142, 106, 133, 166, 91, 85, 76, 2),
    "nv": (30, 81, 39, 73, 158, 221, 410, 668, 846, 1100, 928, 686, 454, 351, 248, 231, 97, 39, 45),
    "vasc": (4, 3, 2, 4, 4, 5, 5, 8, 3, 16, 12, 21, 10, 4, 14, 11, 11, 5, 0),
}
# class -> counts over SEXES.
SEX_COUNTS: dict[str, tuple[int, ...]] = {
    "akiec": (106, 221, 0),
    "bcc": (197, 317, 0),
    "bkl": (463, 626, 10),
    "df": (52, 63, 0),
    "mel": (424, 689, 0),
    "nv": (3237, 3421, 47),
    "vasc": (73, 69, 0),
}
# class -> counts over LOCALIZATIONS.
LOCALIZATION_COUNTS: dict[str, tuple[int, ...]] = {
    "akiec": (14, 113, 3, 10, 12, 5, 29, 1, 62, 13, 65, 0, 0, 0, 0),
    "bcc": (19, 101, 0, 14, 47, 18, 186, 11, 49, 2, 58, 4, 0, 0, 5),
    "bkl": (34, 319, 6, 31, 74, 42, 202, 73, 104, 14, 174, 1, 0, 2, 23),
    "df": (0, 0, 0, 0, 0, 4, 2, 0, 24, 0, 82, 2, 0, 1, 0),
    "mel": (14, 104, 17, 29, 68, 66, 324, 47, 213, 1, 192, 28, 0, 0, 10),
    "nv": (45, 100, 30, 81, 200, 860, 1427, 1241, 655, 55, 1479, 284, 7, 45, 196),
    "vasc": (2, 8, 0, 3, 6, 27, 22, 31, 11, 5, 27, 0, 0, 0, 0),
}


def derive_metadata_stats(csv_path: str | Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """Count age bins (+ blank), sexes and localizations per class in a HAM10000 metadata CSV.

    Returns ``{"age": AGE_COUNTS-like, "sex": ..., "localization": ...}``; this is how the tables
    above were made. Raises ``ValueError`` on a value outside the HAM10000 vocabularies.
    """
    classes = vocab.HAM10000_CLASSES
    age = {c: [0] * (len(AGE_BINS) + 1) for c in classes}
    sex = {c: [0] * len(SEXES) for c in classes}
    loc = {c: [0] * len(LOCALIZATIONS) for c in classes}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            dx = row["dx"]
            if dx not in age:
                raise ValueError(f"{csv_path}: unknown dx {dx!r}, expected one of {', '.join(classes)}")
            raw_age = row["age"].strip()
            if raw_age:
                a = int(float(raw_age))
                if a not in AGE_BINS:
                    raise ValueError(f"{csv_path}: age {raw_age!r} is not one of HAM10000's 5-year bins")
                age[dx][AGE_BINS.index(a)] += 1
            else:
                age[dx][-1] += 1
            sex[dx][SEXES.index(vocab.normalize_sex(row.get("sex", row.get("gender"))))] += 1
            raw_loc = row["localization"].strip().lower() or vocab.UNKNOWN
            if raw_loc not in LOCALIZATIONS:
                raise ValueError(f"{csv_path}: unknown localization {raw_loc!r}")
            loc[dx][LOCALIZATIONS.index(raw_loc)] += 1
    return {name: {c: tuple(v) for c, v in table.items()} for name, table in (("age", age), ("sex", sex), ("localization", loc))}


def class_frequencies() -> dict[str, float]:
    """HAM10000's class prior (share of images per class), e.g. for ``class_weights="ham10000"``."""
    totals = {c: sum(SEX_COUNTS[c]) for c in vocab.HAM10000_CLASSES}
    n = sum(totals.values())
    return {c: t / n for c, t in totals.items()}


def _probabilities(counts: tuple[int, ...]) -> np.ndarray:
    p = np.asarray(counts, dtype=np.float64)
    return p / p.sum()


def sample_metadata(label: str, rng: np.random.Generator) -> tuple[float | None, str, str]:
    """Draw ``(age or None, sex, HAM10000 localization)`` for one image of class ``label``."""
    if label not in AGE_COUNTS:
        raise ValueError(f"unknown label {label!r}: expected one of {', '.join(vocab.HAM10000_CLASSES)}")
    age_index = rng.choice(len(AGE_BINS) + 1, p=_probabilities(AGE_COUNTS[label]))
    age = None if age_index == len(AGE_BINS) else float(AGE_BINS[age_index])
    sex = SEXES[rng.choice(len(SEXES), p=_probabilities(SEX_COUNTS[label]))]
    localization = LOCALIZATIONS[rng.choice(len(LOCALIZATIONS), p=_probabilities(LOCALIZATION_COUNTS[label]))]
    return age, sex, localization
