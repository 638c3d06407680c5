"""Clinical metadata (age, sex, site) → the tensors the classifier's metadata transformer reads.

One encoder for the dataset, the pipeline and the app, so that "unknown" means the same everywhere:

- ``age``:  (B,) float32, years; NaN = missing (the model swaps in its learned ``missing`` embedding);
- ``sex``:  (B,) int64, index into :data:`dermfuse.vocab.SEXES` (blank → ``unknown``);
- ``site``: (B,) int64, index into :data:`dermfuse.vocab.SITES` (HAM10000 localizations accepted).

Values outside the vocabularies raise ``ValueError`` (from :mod:`dermfuse.vocab`) rather than being
guessed: a typo must not silently become ``unknown``. :func:`normalize_metadata` does that check
(once per value) and :func:`encode_normalized` turns checked values into tensors, so a caller that
also shows the values (the pipeline) checks each field once.
"""

from __future__ import annotations

import math
import numpy as np
import torch

from dermfuse.vocab import SEXES, SITES, normalize_age, normalize_sex, normalize_site


def encode_metadata(age=None, sex=None, site=None) -> dict[str, torch.Tensor]:
    """Encode one case (scalars: a batch of one, shape (1,)) or a batch (equal-length sequences, shape (B,)).

    ``None``, NaN and blank strings mean missing. Example: ``encode_metadata(55, "female", "back")``
    → ``{"age": tensor([55.]), "sex": tensor([0]), "site": tensor([1])}``.
    """
    return encode_normalized(*normalize_metadata(age, sex, site))


def normalize_metadata(age=None, sex=None, site=None) -> tuple[list, list[str], list[str]]:
    """Check every value against the vocabularies, once: (ages in years or ``None``, sexes, sites), one per case.

    Takes what :func:`encode_metadata` takes (a scalar applies to the whole batch); raises ``ValueError``
    for an impossible age, an unknown sex or site, or columns of different lengths.
    """
    ages, sexes, sites = (_as_list(value) for value in (age, sex, site))
    size = max(len(ages), len(sexes), len(sites))
    columns = []
    for name, values in (("age", ages), ("sex", sexes), ("site", sites)):
        if len(values) == 1 and size > 1:
            values = values * size  # a scalar applies to the whole batch
        if len(values) != size:
            raise ValueError(f"metadata {name} has {len(values)} values for a batch of {size}: give one per image")
        columns.append(values)
    ages, sexes, sites = columns
    return [normalize_age(a) for a in ages], [normalize_sex(s) for s in sexes], [normalize_site(s) for s in sites]


def encode_normalized(ages: list, sexes: list[str], sites: list[str]) -> dict[str, torch.Tensor]:
    """Tensors of values :func:`normalize_metadata` has checked (``None`` age = missing): no second check."""
    return {
        "age": torch.tensor([math.nan if a is None else a for a in ages], dtype=torch.float32),
        "sex": torch.tensor([SEXES.index(s) for s in sexes], dtype=torch.long),
        "site": torch.tensor([SITES.index(s) for s in sites], dtype=torch.long),
    }


def age_in_range(age: float | None, age_range) -> float | None:
    """``age`` moved into ``age_range`` (a model's [youngest, oldest], ``DermFuse.age_range``; ``None``: kept as it is),
    so the model is not asked to extrapolate beyond the ages it learned from."""
    if age is None or age_range is None:
        return age
    return min(max(age, age_range[0]), age_range[1])


def age_caution(age: float | None, age_range) -> str | None:
    """What a reader is told when :func:`age_in_range` moved ``age``; ``None`` when it did not."""
    given = age_in_range(age, age_range)
    if given == age:
        return None
    end, beyond = ("oldest", "older") if age > given else ("youngest", "younger")
    return (f"Age {age:g} was given to the model as {given:g}, the {end} age among its training images: it never "
            f"learned from {beyond} patients.")


def _as_list(value) -> list:
    """A scalar → [scalar]; a sequence, array, tensor or Series → its values."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return np.asarray(value).reshape(-1).tolist()
    if value is None or isinstance(value, (str, int, float)):
        return [value]
    return list(value)
