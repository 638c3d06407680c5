"""Train/validation/test splits and cross-validation folds that never leak a lesion across splits.

HAM10000 holds several photographs of one lesion (10,015 images, 7,470 lesions): splitting by image
would test a model on lesions it trained on. So every split here is grouped by ``lesion_id`` (the
image id where a dataset gives none) and stratified by label, with scikit-learn's
``StratifiedGroupKFold``. A split is written once as a manifest CSV and read back by training and
evaluation, so both see exactly the same images.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from dermfuse.data.table import TABLE_COLUMNS, require_columns

SPLITS: tuple[str, ...] = ("train", "val", "test")
_MAX_FOLDS = 100  # fractions are realised in steps of 1/folds


def lesion_groups(table: pd.DataFrame) -> pd.Series:
    """The group of each row: its ``lesion_id``, or its image id where the lesion id is blank."""
    lesion = table["lesion_id"].astype("str").str.strip()
    blank = table["lesion_id"].isna() | (lesion == "")
    return pd.Series(np.where(blank, "image:" + table["image_id"].astype("str"), "lesion:" + lesion), index=table.index)


def make_splits(table: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> pd.DataFrame:
    """A copy of ``table`` with a ``split`` column ("train" / "val" / "test").

    Grouped by lesion, stratified by label, deterministic for a given ``seed``. The table is cut
    into K grouped, stratified folds (K the smallest number of folds, at most 100, in which the
    fractions are whole numbers of folds: 20 for 0.7/0.15/0.15) and whole folds are handed to the
    splits, so the fractions hold to a fold's granularity while no lesion is cut.
    """
    fractions = _check_fractions(fractions)
    require_columns(table, ("image_id", "label", "lesion_id"), Path("<table>"))
    groups = lesion_groups(table)
    n_groups = groups.nunique()
    n_folds = min(_fold_count(fractions), n_groups)
    counts = _folds_per_split(fractions, n_folds)
    if n_folds < 2 or min(c for c, f in zip(counts, fractions) if f > 0) == 0:
        raise ValueError(
            f"{n_groups} lesion(s) are too few to split {fractions}: give more images or set a fraction to 0"
        )
    fold_split = [name for name, count in zip(SPLITS, counts) for _ in range(count)]
    labels = table["label"].astype("str").fillna("<none>").to_numpy()
    split = np.empty(len(table), dtype=object)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, members) in enumerate(folds.split(np.zeros(len(table)), labels, groups.to_numpy())):
        split[members] = fold_split[fold]
    result = table.copy()
    result["split"] = pd.Series(split, index=table.index, dtype="str")
    return result


def kfold(table: pd.DataFrame, k: int = 5, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (train positions, test positions) for ``k`` grouped, stratified folds (positions for ``.iloc``).

    The same recipe as the reference metadata benchmark (``StratifiedGroupKFold``, shuffle,
    ``random_state=seed``, grouped by lesion), so its numbers are reproducible with this function.
    """
    if k < 2:
        raise ValueError(f"k={k}: cross-validation needs at least 2 folds")
    require_columns(table, ("image_id", "label", "lesion_id"), Path("<table>"))
    labels = table["label"].astype("str").fillna("<none>").to_numpy()
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    yield from folds.split(np.zeros(len(table)), labels, lesion_groups(table).to_numpy())


def check_manifest(table: pd.DataFrame) -> None:
    """Raise ``ValueError`` unless every image and every lesion lies in exactly one known split."""
    require_columns(table, ("image_id", "lesion_id", "split"), Path("<manifest>"))
    unknown = sorted(set(table["split"].dropna()) - set(SPLITS)) + (["<blank>"] if table["split"].isna().any() else [])
    if unknown:
        raise ValueError(f"manifest split values {unknown} are not among {', '.join(SPLITS)}")
    for what, keys in (("image", table["image_id"]), ("lesion", lesion_groups(table))):
        per_key = table.groupby(keys.to_numpy())["split"].nunique()
        leaked = per_key.index[per_key > 1].tolist()
        if leaked:
            shown = ", ".join(map(str, leaked[:10])) + (f" and {len(leaked) - 10} more" if len(leaked) > 10 else "")
            raise ValueError(
                f"{len(leaked)} {what}(s) lie in more than one split: {shown}. Remake the split with make_splits()"
            )


def write_manifest(table: pd.DataFrame, path) -> None:
    """Write a split table (the unified columns + ``split``, any extra columns after them) as CSV."""
    check_manifest(table)
    require_columns(table, TABLE_COLUMNS, Path("<manifest>"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


PATH_COLUMNS = ("image_path", "mask_path")


def read_manifest(path, paths: bool = True) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`, with the dtypes the readers produce, and check it.

    ``paths=False`` also accepts a published manifest, which names images by id without local file paths.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest {path} not found: write one with write_manifest()")
    table = pd.read_csv(path, dtype="str", keep_default_na=False, na_values=[""])
    required = TABLE_COLUMNS if paths else tuple(c for c in TABLE_COLUMNS if c not in PATH_COLUMNS)
    require_columns(table, (*required, "split"), path)
    table["age"] = table["age"].astype("float64")
    check_manifest(table)
    return table


def _check_fractions(fractions) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions={fractions}: give three non-negative (train, val, test) fractions summing to 1")
    if fractions[0] == 0:
        raise ValueError("fractions: the train fraction must be above 0")
    return fractions


def _fold_count(fractions) -> int:
    for folds in range(2, _MAX_FOLDS + 1):
        if all(abs(f * folds - round(f * folds)) < 1e-6 for f in fractions):
            return folds
    return _MAX_FOLDS


def _folds_per_split(fractions, n_folds: int) -> list[int]:
    """Whole folds per split, by largest remainder, summing to ``n_folds``."""
    exact = [f * n_folds for f in fractions]
    counts = [math.floor(x) for x in exact]
    for i in sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)[: n_folds - sum(counts)]:
        counts[i] += 1
    return counts
