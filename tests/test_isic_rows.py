"""The real-data recipe's ISIC tables: only ISIC 2018 Task 1 *training* rows get ISIC 2019 labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.isic_rows import isic_labelled, isic_weighted

COLUMNS = ("image_id", "image_path", "mask_path", "label", "age", "sex", "site", "lesion_id", "source", "split")


def _rows(entries) -> pd.DataFrame:
    return pd.DataFrame([dict(zip(COLUMNS, (image, f"{image}.jpg", f"{image}.png", *rest))) for image, *rest in entries])


def _isic2019_tables(folder, images):
    classes = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
    truth = [{"image": image, **{c: float(c == diagnosis) for c in classes}} for image, diagnosis, *_ in images]
    meta = [{"image": image, "age_approx": age, "anatom_site_general": site, "lesion_id": "", "sex": sex}
            for image, _, age, sex, site in images]
    pd.DataFrame(truth).to_csv(folder / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame(meta).to_csv(folder / "ISIC_2019_Training_Metadata.csv", index=False)


def test_only_isic_training_rows_are_labelled(tmp_path):
    _isic2019_tables(tmp_path, [("ISIC_0000001", "MEL", 55, "male", "posterior torso"),
                                ("ISIC_0000002", "NV", 30, "female", "lower extremity"),
                                ("ISIC_0000003", "BKL", 70, "male", "head/neck")])
    rows = _rows([("ISIC_0000001", np.nan, np.nan, np.nan, np.nan, np.nan, "isic2018_task1", "train"),
                  ("ISIC_0000002", np.nan, np.nan, np.nan, np.nan, np.nan, "isic2018_task1", "val"),
                  ("ISIC_0000003", np.nan, np.nan, np.nan, np.nan, np.nan, "isic2018_task1", "test"),
                  ("ISIC_0024306", "nv", 45.0, "male", "trunk", "HAM_0000550", "ham10000", "train")])
    labelled = isic_labelled(rows, tmp_path)
    first = labelled.iloc[0]
    assert (first["label"], first["age"], first["sex"], first["site"]) == ("mel", 55.0, "male", "posterior torso")
    assert labelled.iloc[1:3]["label"].isna().all() and labelled.iloc[1:3]["age"].isna().all()  # val, test: unlabelled
    assert labelled.iloc[3].equals(rows.iloc[3]) and labelled["age"].dtype == np.float64
    assert pd.isna(rows["label"].iloc[0])  # the input is left as it was


def test_the_isic_test_rows_can_be_labelled_instead(tmp_path):
    _isic2019_tables(tmp_path, [("ISIC_0000001", "MEL", 55, "male", "posterior torso"),
                                ("ISIC_0000003", "BKL", 70, "male", "head/neck")])
    rows = _rows([("ISIC_0000001", np.nan, np.nan, np.nan, np.nan, np.nan, "isic2018_task1", "train"),
                  ("ISIC_0000003", np.nan, np.nan, np.nan, np.nan, np.nan, "isic2018_task1", "test")])
    labelled = isic_labelled(rows, tmp_path, splits=("test",))
    assert pd.isna(labelled.iloc[0]["label"])
    assert (labelled.iloc[1]["label"], labelled.iloc[1]["age"], labelled.iloc[1]["site"]) == ("bkl", 70.0, "head/neck")
    unknown = pd.concat([rows, _rows([("ISIC_0009999", np.nan, np.nan, np.nan, np.nan, np.nan, "isic2018_task1", "test")])])
    with pytest.raises(ValueError, match="1 ISIC 2018 Task 1 test images are not in"):
        isic_labelled(unknown, tmp_path, splits=("test",))
    kept = isic_labelled(unknown, tmp_path, splits=("test",), every_row=False)  # scoring: it stays unlabelled
    assert kept["label"].iloc[1] == "bkl" and pd.isna(kept["label"].iloc[2])


def test_an_isic_training_image_without_a_label_is_an_error(tmp_path):
    _isic2019_tables(tmp_path, [("ISIC_0000001", "MEL", 55, "male", "posterior torso")])
    rows = _rows([("ISIC_0009999", np.nan, np.nan, np.nan, np.nan, np.nan, "isic2018_task1", "train")])
    with pytest.raises(ValueError, match="1 ISIC 2018 Task 1 train images are not in .*ISIC_0009999"):
        isic_labelled(rows, tmp_path)


def test_the_isic_weighted_mix_keeps_isic_and_test_and_cuts_ham(monkeypatch):
    import experiments.isic_rows as isic_rows

    monkeypatch.setattr(isic_rows, "HAM_KEPT", {"train": 3, "val": 1})
    ham = [(f"HAM_{i}", "nv", 40.0, "male", "back", f"L{i // 2}", "ham10000", split)
           for i, split in enumerate(["train"] * 8 + ["val"] * 4 + ["test"] * 2)]
    rows = _rows(ham + [("ISIC_1", np.nan, np.nan, np.nan, np.nan, np.nan, "isic2018_task1", "train")])
    mix = isic_weighted(rows)
    kept = mix.groupby("split")["image_id"].count()
    assert kept["test"] == 2 and "ISIC_1" in set(mix["image_id"])
    assert kept["train"] == 1 + 3 and kept["val"] == 1  # ISIC's one and HAM10000's three; one of four
