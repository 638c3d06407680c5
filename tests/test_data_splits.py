"""Splits: no lesion in two splits, labels stratified, deterministic, manifests round-trip and are checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dermfuse.data.readers import read_ham10000
from dermfuse.data.splits import check_manifest, kfold, lesion_groups, make_splits, read_manifest, write_manifest


@pytest.fixture(scope="module")
def ham(shared_data):
    return read_ham10000(shared_data, images=False)


@pytest.fixture(scope="module")
def ham_split(ham):
    return make_splits(ham, fractions=(0.7, 0.15, 0.15), seed=0)


def test_real_split_keeps_lesions_whole(ham_split):
    assert (ham_split.groupby("lesion_id")["split"].nunique() == 1).all()
    assert set(ham_split["split"]) == {"train", "val", "test"}
    check_manifest(ham_split)


def test_real_split_fractions_and_class_proportions(ham, ham_split):
    shares = ham_split["split"].value_counts(normalize=True)
    for name, fraction in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert abs(shares[name] - fraction) < 0.01
    overall = ham["label"].value_counts(normalize=True)
    per_split = pd.crosstab(ham_split["label"], ham_split["split"], normalize="columns")
    for split in ("train", "val", "test"):
        assert (per_split[split] - overall).abs().max() < 0.01, per_split
    # every class, even df (115 images), reaches every split
    assert (pd.crosstab(ham_split["label"], ham_split["split"]) >= 10).all().all()


@pytest.mark.slow
def test_real_split_is_deterministic(ham, ham_split):
    again = make_splits(ham, seed=0)
    pd.testing.assert_series_equal(again["split"], ham_split["split"])
    assert "split" not in ham.columns  # the input table is untouched


def test_seed_changes_the_split():
    table = _small_table(n_lesions=200)
    first = make_splits(table, seed=0)["split"]
    pd.testing.assert_series_equal(make_splits(table, seed=0)["split"], first)
    assert (make_splits(table, seed=1)["split"] != first).mean() > 0.2


def test_manifest_round_trip_and_doctored_manifest(ham_split, tmp_path):
    path = tmp_path / "runs" / "manifest.csv"
    write_manifest(ham_split, path)
    pd.testing.assert_frame_equal(read_manifest(path), ham_split)

    doctored = ham_split.copy()
    lesion = doctored["lesion_id"].value_counts().index[0]  # a lesion with several images
    row = doctored.index[doctored["lesion_id"] == lesion][0]
    doctored.loc[row, "split"] = "test" if doctored.loc[row, "split"] != "test" else "train"
    with pytest.raises(ValueError, match=rf"1 lesion\(s\) lie in more than one split: lesion:{lesion}"):
        check_manifest(doctored)
    doctored.to_csv(path, index=False)
    with pytest.raises(ValueError, match="more than one split"):
        read_manifest(path)


def test_duplicated_image_and_unknown_split_are_refused(ham_split):
    twice = pd.concat([ham_split.iloc[:1], ham_split.iloc[:1].assign(split="val", lesion_id="other")])
    twice.loc[:, "split"] = ["train", "val"]
    with pytest.raises(ValueError, match=rf"1 image\(s\) lie in more than one split: {ham_split['image_id'].iloc[0]}"):
        check_manifest(twice)
    with pytest.raises(ValueError, match=r"split values \['holdout'\] are not among train, val, test"):
        check_manifest(ham_split.iloc[:3].assign(split="holdout"))


def test_real_kfold_groups_and_partitions(ham):
    seen = np.zeros(len(ham), int)
    groups = lesion_groups(ham).to_numpy()
    folds = list(kfold(ham, k=5, seed=0))
    assert len(folds) == 5
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert abs(len(test) / len(ham) - 0.2) < 0.01
        seen[test] += 1
    assert (seen == 1).all()


def _small_table(n_lesions=40, images_per_lesion=2, blank_lesions=10):
    rows = []
    for lesion in range(n_lesions):
        for image in range(images_per_lesion):
            rows.append({"image_id": f"I{lesion}_{image}", "label": "mel" if lesion % 4 == 0 else "nv",
                         "lesion_id": f"L{lesion}"})
    rows += [{"image_id": f"solo{i}", "label": "nv", "lesion_id": None} for i in range(blank_lesions)]
    return pd.DataFrame(rows)


def test_blank_lesion_ids_group_by_image():
    table = _small_table()
    groups = lesion_groups(table)
    assert groups.iloc[-1] == "image:solo9" and groups.iloc[0] == "lesion:L0"
    split = make_splits(table, fractions=(0.6, 0.2, 0.2), seed=3)
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()
    assert set(split.loc[split["label"] == "mel", "split"]) == {"train", "val", "test"}


@pytest.mark.parametrize(
    "fractions, message",
    [((0.5, 0.5), "three non-negative"), ((0.7, 0.2, 0.2), "summing to 1"), ((0.0, 0.5, 0.5), "train fraction")],
)
def test_bad_fractions(fractions, message):
    with pytest.raises(ValueError, match=message):
        make_splits(_small_table(), fractions=fractions)


def test_too_few_lesions():
    with pytest.raises(ValueError, match="1 lesion"):
        make_splits(_small_table(n_lesions=1, blank_lesions=0))
