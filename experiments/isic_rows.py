"""The image tables the two ISIC fine-tune studies learn from: which rows, with which split and labels.

``with_splits`` joins the images (with masks) of the dataset folders to a model's or run's ``splits.csv``;
``isic_weighted`` is the segmenter fine-tune's mix (``experiments/isic_probe.py``); ``isic_labelled`` gives
ISIC 2018 Task 1 rows their ISIC 2019 diagnosis and age / sex / site: the *training* rows for the classifier
fine-tune (``experiments/isic_classifier.py``), the *test* rows for the shipped model's check on images from other
clinics (``experiments/ham10000.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from dermfuse.data import read_dataset
from dermfuse.data.readers import read_isic2019

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = {"ham10000": "HAM10000", "isic2018_task1": "ISIC2018_Task1"}  # their folders in the shared data
HAM_KEPT = {"train": 2000, "val": 500}  # HAM10000 images in the segmenter fine-tune's mix
LABELLED_FIELDS = ("label", "age", "sex", "site")


def with_splits(run: Path, folders: Sequence[Path]) -> pd.DataFrame:
    """The folders' images with masks, each with its split from ``run``'s ``splits.csv`` (images not in it left out)."""
    splits = pd.read_csv(Path(run) / "splits.csv")[["image_id", "split"]]
    rows = pd.concat([read_dataset(folder) for folder in folders], ignore_index=True)
    return rows.merge(splits, on="image_id", how="inner")


def isic_weighted(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every ISIC row and every test row; of HAM10000's training and validation rows, whole lesions in a seeded
    order until ``HAM_KEPT`` images."""
    ham = rows["source"] == "ham10000"
    keep = ~ham | (rows["split"] == "test")
    for split, count in HAM_KEPT.items():
        part = rows[ham & (rows["split"] == split)]
        order = part["lesion_id"].drop_duplicates().sample(frac=1.0, random_state=seed).tolist()
        rank = part["lesion_id"].map({lesion: i for i, lesion in enumerate(order)})
        keep |= rows.index.isin(rank.sort_values(kind="stable").index[:count])
    return rows[keep].reset_index(drop=True)


def isic_labelled(rows: pd.DataFrame, isic2019_tables: Path, splits: Sequence[str] = ("train",),
                  every_row: bool = True) -> pd.DataFrame:
    """``rows`` with the ISIC 2018 Task 1 rows of ``splits`` given their diagnosis, age, sex and site from the ISIC
    2019 tables in ``isic2019_tables`` (``ISIC_2019_Training_GroundTruth.csv``, ``ISIC_2019_Training_Metadata.csv``);
    the other splits' rows stay unlabelled (by default validation and test: the classifier fine-tune learns from the
    training rows only). A chosen row missing from the tables is an error, or with ``every_row=False`` stays
    unlabelled (scoring: a few ISIC 2018 images have no ISIC 2019 diagnosis)."""
    isic2019 = read_isic2019(isic2019_tables, images=False).set_index("image_id")
    rows = rows.copy()
    chosen = (rows["source"] == "isic2018_task1") & rows["split"].isin(list(splits))
    missing = sorted(set(rows.loc[chosen, "image_id"]) - set(isic2019.index))
    if missing and every_row:
        raise ValueError(f"{len(missing)} ISIC 2018 Task 1 {'/'.join(splits)} images are not in {isic2019_tables}'s "
                         f"ISIC_2019_Training_GroundTruth.csv, e.g. {missing[:3]}")
    for field in LABELLED_FIELDS:
        rows[field] = rows[field].astype(object)
        rows.loc[chosen, field] = rows.loc[chosen, "image_id"].map(isic2019[field]).to_numpy()
    rows["age"] = rows["age"].astype("float64")
    return rows
