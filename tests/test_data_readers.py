"""Dataset readers: the real tables' counts and vocabularies, tiny generated layouts, and every row error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermfuse import vocab
from dermfuse.data.readers import (
    parse_ph2_table,
    read_dataset,
    read_ham10000,
    read_image_folder,
    read_isic2018_task1,
    read_isic2018_task3,
    read_isic2019,
    read_ph2,
)
from dermfuse.data.table import TABLE_COLUMNS, combine

HAM_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}


# ---- the real tables (../shared/data) -------------------------------------------------------------


@pytest.fixture(scope="module")
def ham(shared_data):
    return read_ham10000(shared_data, images=False)


@pytest.fixture(scope="module")
def isic2019(shared_data):
    return read_isic2019(shared_data, images=False)


def _assert_vocabularies(table):
    assert tuple(table.columns) == TABLE_COLUMNS
    assert set(table["sex"]) <= set(vocab.SEXES)
    assert set(table["site"]) <= set(vocab.SITES)
    assert table["image_path"].isna().all() and table["mask_path"].isna().all()


def _known(raw: pd.Series) -> np.ndarray:
    """Raw values that must not come out as 'unknown': present, non-blank, not 'unknown' themselves."""
    text = raw.fillna("").astype(str).str.strip().str.lower()
    return ((text != "") & (text != "unknown")).to_numpy()


def test_ham10000_real_table(ham, shared_data):
    raw = pd.read_csv(shared_data / "HAM10000_metadata.csv")
    assert len(ham) == 10015 and ham["image_id"].nunique() == 10015
    assert ham["lesion_id"].nunique() == 7470
    assert ham["label"].value_counts().to_dict() == HAM_COUNTS
    assert "dx_type" not in ham.columns and set(ham["source"]) == {"ham10000"}
    _assert_vocabularies(ham)
    assert ham["age"].isna().sum() == raw["age"].isna().sum() == 57
    assert not (ham["site"].to_numpy()[_known(raw["localization"])] == "unknown").any()
    assert not (ham["sex"].to_numpy()[_known(raw["sex"])] == "unknown").any()
    assert (ham.loc[raw["localization"] == "back", "site"] == "posterior torso").all()
    assert (ham.loc[raw["localization"] == "acral", "site"] == "palms/soles").all()


def test_isic2019_real_table(isic2019, shared_data):
    truth = pd.read_csv(shared_data / "ISIC_2019_Training_GroundTruth.csv")
    meta = pd.read_csv(shared_data / "ISIC_2019_Training_Metadata.csv")
    expected = {name: int(truth[vocab.CSV_COLUMN[name]].sum()) for name in vocab.ISIC2019_CLASSES}
    assert len(isic2019) == 25331
    assert isic2019["label"].value_counts().to_dict() == expected
    assert expected["mel"] == 4522 and expected["nv"] == 12875 and expected["scc"] == 628
    assert truth["UNK"].sum() == 0
    _assert_vocabularies(isic2019)
    assert not isic2019["image_id"].str.endswith("_downsampled").any()
    assert isic2019["age"].isna().sum() == 437
    sex_column = "sex" if "sex" in meta.columns else "gender"
    assert not (isic2019["sex"].to_numpy()[_known(meta[sex_column])] == "unknown").any()
    assert not (isic2019["site"].to_numpy()[_known(meta["anatom_site_general"])] == "unknown").any()
    assert (isic2019["site"] == "unknown").sum() == 2631 and (isic2019["sex"] == "unknown").sum() == 384


def test_ham10000_is_inside_isic2019_and_combine_dedupes(ham, isic2019):
    assert set(ham["image_id"]) <= set(isic2019["image_id"])
    both = combine([ham, isic2019])
    assert len(both) == 25331 and both.attrs["duplicates_dropped"] == 10015
    assert (both["source"] == "ham10000").sum() == 10015  # the first table's rows win
    assert both["image_id"].is_unique


@pytest.mark.parametrize("split, rows", [("Validation", 193), ("Test", 1512)])
def test_isic2018_task3_real_tables(shared_data, split, rows):
    table = read_isic2018_task3(shared_data, split, images=False)
    raw = pd.read_csv(shared_data / f"ISIC2018_Task3_{split}_GroundTruth.csv")
    assert len(table) == rows
    expected = {name: int(raw[vocab.CSV_COLUMN[name]].sum()) for name in vocab.ISIC2018_CLASSES}
    assert table["label"].value_counts().to_dict() == {k: v for k, v in expected.items() if v}


def test_ham10000_subset_with_image_files(shared_data, tmp_path, save_image):
    raw = pd.read_csv(shared_data / "HAM10000_metadata.csv", dtype=str, keep_default_na=False).head(10)
    raw.to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    for i, image_id in enumerate(raw["image_id"]):
        save_image(tmp_path / f"HAM10000_images_part_{1 + i % 2}" / f"{image_id}.jpg", size=(60, 45))
    for image_id in raw["image_id"][:4]:
        save_image(tmp_path / "HAM10000_segmentations_lesion_tschandl" / f"{image_id}_segmentation.png",
                   size=(60, 45), mask_box=(10, 10, 30, 30))
    table = read_ham10000(tmp_path)
    assert list(table["image_id"]) == list(raw["image_id"])
    assert all(Path(p).is_file() and Path(p).stem == i for p, i in zip(table["image_path"], table["image_id"]))
    assert table["mask_path"].notna().tolist() == [True] * 4 + [False] * 6
    assert read_ham10000(tmp_path, masks=False)["mask_path"].isna().all()
    with pytest.raises(ValueError, match=r"line 6 \(.*\): no mask for image .*masks=True requires one"):
        read_ham10000(tmp_path, masks=True)


def test_isic2019_subset_keeps_downsampled_file_names(shared_data, tmp_path, save_image):
    truth = pd.read_csv(shared_data / "ISIC_2019_Training_GroundTruth.csv", dtype=str)
    meta = pd.read_csv(shared_data / "ISIC_2019_Training_Metadata.csv", dtype=str)
    picked = truth.index[truth["image"].str.endswith("_downsampled")][:5].union(truth.index[:5])
    truth.loc[picked].to_csv(tmp_path / "ISIC_2019_Training_GroundTruth.csv", index=False)
    meta.loc[picked].to_csv(tmp_path / "ISIC_2019_Training_Metadata.csv", index=False)
    for name in truth.loc[picked, "image"]:
        save_image(tmp_path / "ISIC_2019_Training_Input" / f"{name}.jpg")
    table = read_isic2019(tmp_path)
    assert len(table) == 10
    downsampled = table["image_path"].str.endswith("_downsampled.jpg")
    assert downsampled.sum() == 5 and not table["image_id"].str.contains("downsampled").any()


# ---- generated layouts and row errors ------------------------------------------------------------

HAM_HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization,dataset\n"
HAM_ROWS = [
    "HAM_1,ISIC_0000001,nv,follow_up,45.0,female,back,vidir_modern",
    "HAM_1,ISIC_0000002,nv,follow_up,45.0,female,back,vidir_modern",
    "HAM_2,ISIC_0000003,mel,histo,,unknown,acral,rosendahl",
    "HAM_3,ISIC_0000004,bcc,histo,70.0,male,,vienna_dias",
]


def _ham_folder(root: Path, save_image, rows=HAM_ROWS, header=HAM_HEADER, mask_sizes=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "HAM10000_metadata.csv").write_text(header + "\n".join(rows) + "\n")
    for row in rows:
        image_id = row.split(",")[1]
        save_image(root / "HAM10000_images" / f"{image_id}.jpg", size=(40, 30))
    for image_id, size in (mask_sizes or {}).items():
        save_image(root / "HAM10000_segmentations_lesion_tschandl" / f"{image_id}_segmentation.png",
                   size=size, mask_box=(5, 5, 20, 20))
    return root


def test_ham10000_generated_layout(tmp_path, save_image):
    root = _ham_folder(tmp_path, save_image, mask_sizes={"ISIC_0000001": (40, 30)})
    table = read_ham10000(root)
    assert table["label"].tolist() == ["nv", "nv", "mel", "bcc"]
    assert table["site"].tolist() == ["posterior torso", "posterior torso", "palms/soles", "unknown"]
    assert table["sex"].tolist() == ["female", "female", "unknown", "male"]
    assert np.isnan(table["age"][2]) and table["age"][3] == 70.0
    assert table["mask_path"].notna().tolist() == [True, False, False, False]
    assert table.attrs["skipped"] == []


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ("HAM_9,ISIC_0000009,cancer,histo,50.0,male,back,x", r"unknown label 'cancer'"),
        ("HAM_9,ISIC_0000009,nv,histo,50.0,male,elbow,x", r"unknown lesion site 'elbow'"),
        ("HAM_9,ISIC_0000009,nv,histo,50.0,other,back,x", r"unknown sex 'other'"),
        ("HAM_9,ISIC_0000009,nv,histo,250,male,back,x", r"age 250 is impossible"),
    ],
)
def test_ham10000_bad_values_name_file_and_line(tmp_path, save_image, bad_row, message):
    root = _ham_folder(tmp_path, save_image, rows=[*HAM_ROWS[:2], bad_row, *HAM_ROWS[2:]])
    with pytest.raises(ValueError, match=r"HAM10000_metadata\.csv line 4 \(ISIC_0000009\): " + message):
        read_ham10000(root)
    table = read_ham10000(root, on_error="skip")
    assert len(table) == 4 and "ISIC_0000009" not in set(table["image_id"])
    assert len(table.attrs["skipped"]) == 1 and "line 4" in table.attrs["skipped"][0]


def test_ham10000_missing_column(tmp_path, save_image):
    rows = [",".join(r.split(",")[:6]) for r in HAM_ROWS]
    root = _ham_folder(tmp_path, save_image, rows=rows, header="lesion_id,image_id,dx,dx_type,age,sex\n")
    with pytest.raises(ValueError, match=r"HAM10000_metadata\.csv lacks column\(s\) localization"):
        read_ham10000(root, images=False)


def test_ham10000_missing_image_file(tmp_path, save_image):
    root = _ham_folder(tmp_path, save_image)
    (root / "HAM10000_images" / "ISIC_0000003.jpg").unlink()
    with pytest.raises(ValueError, match=r"line 4 \(ISIC_0000003\): image file ISIC_0000003\.jpg .*not found in"):
        read_ham10000(root)
    table = read_ham10000(root, on_error="skip")
    assert len(table) == 3 and len(table.attrs["skipped"]) == 1
    assert len(read_ham10000(root, images=False)) == 4


def test_ham10000_mask_size_mismatch(tmp_path, save_image):
    root = _ham_folder(tmp_path, save_image, mask_sizes={"ISIC_0000002": (41, 30)})
    with pytest.raises(ValueError, match=r"line 3 \(ISIC_0000002\): mask .*ISIC_0000002_segmentation\.png is 41×30 "
                                         r"but image .*ISIC_0000002\.jpg is 40×30"):
        read_ham10000(root)
    assert read_ham10000(root, on_error="skip").attrs["skipped"][0].count("41×30") == 1


def test_bad_options():
    with pytest.raises(ValueError, match="on_error='ignore': expected one of raise, skip"):
        read_ham10000("/nowhere", on_error="ignore")
    with pytest.raises(ValueError, match="masks='yes'"):
        read_ham10000("/nowhere", masks="yes")


def test_isic2018_task1(tmp_path, save_image):
    for name in ("ISIC_0000010", "ISIC_0000011", "ISIC_0000012"):
        save_image(tmp_path / "ISIC2018_Task1-2_Training_Input" / f"{name}.jpg", size=(32, 24))
    for name in ("ISIC_0000010", "ISIC_0000011"):
        save_image(tmp_path / "ISIC2018_Task1_Training_GroundTruth" / f"{name}_segmentation.png",
                   size=(32, 24), mask_box=(2, 2, 9, 9))
    (tmp_path / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("licence")
    table = read_isic2018_task1(tmp_path)
    assert table["image_id"].tolist() == ["ISIC_0000010", "ISIC_0000011", "ISIC_0000012"]
    assert table["label"].isna().all() and set(table["sex"]) == {"unknown"}
    assert table["mask_path"].notna().tolist() == [True, True, False]
    with pytest.raises(ValueError, match=r"ISIC_0000012\.jpg: no mask"):
        read_isic2018_task1(tmp_path, masks=True)
    assert read_dataset(tmp_path)["source"].eq("isic2018_task1").all()


def test_isic2018_task3_reads_columns_by_name(tmp_path, save_image):
    (tmp_path / "ISIC2018_Task3_Validation_GroundTruth.csv").write_text(
        "VASC,image,DF,BKL,AKIEC,BCC,NV,MEL\n"  # shuffled on purpose
        "0.0,ISIC_0034321,0.0,0.0,0.0,0.0,0.0,1.0\n"
        "1.0,ISIC_0034322,0.0,0.0,0.0,0.0,0.0,0.0\n"
        "0.0,ISIC_0034323,0.0,0.0,1.0,0.0,1.0,0.0\n"
    )
    for name in ("ISIC_0034321", "ISIC_0034322", "ISIC_0034323"):
        save_image(tmp_path / "ISIC2018_Task3_Validation_Input" / f"{name}.jpg")
    with pytest.raises(ValueError, match=r"line 4 \(ISIC_0034323\): 2 classes marked 1 \(akiec, nv\)"):
        read_isic2018_task3(tmp_path)
    table = read_isic2018_task3(tmp_path, on_error="skip")
    assert table["label"].tolist() == ["mel", "vasc"] and table["image_path"].notna().all()


ISIC2019_TRUTH = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"


def test_isic2019_unk_and_sex_column(tmp_path):
    (tmp_path / "ISIC_2019_Training_GroundTruth.csv").write_text(
        ISIC2019_TRUTH
        + "ISIC_0000001,0,0,0,0,0,0,0,1,0\n"
        + "ISIC_0000002_downsampled,0,0,0,0,0,0,0,0,1\n"
        + "ISIC_0000003,0,0,0,1,0,0,0,0,0\n"
    )
    (tmp_path / "ISIC_2019_Training_Metadata.csv").write_text(
        "image,age_approx,anatom_site_general,lesion_id,sex\n"
        "ISIC_0000003,35,lateral torso,BCN_1,female\n"  # order differs from the ground truth
        "ISIC_0000001,,oral/genital,,\n"
        "ISIC_0000002_downsampled,50,head/neck,,male\n"
    )
    with pytest.raises(ValueError, match=r"GroundTruth\.csv line 3, ISIC_2019_Training_Metadata\.csv line 4 "
                                         r"\(ISIC_0000002_downsampled\): labelled UNK"):
        read_isic2019(tmp_path, images=False)
    table = read_isic2019(tmp_path, images=False, on_error="skip")
    assert table["label"].tolist() == ["scc", "ak"] and len(table.attrs["skipped"]) == 1
    assert table["site"].tolist() == ["oral/genital", "lateral torso"]
    assert table["sex"].tolist() == ["unknown", "female"] and table["lesion_id"].tolist()[1] == "BCN_1"


def test_isic2019_missing_sex_column(tmp_path):
    (tmp_path / "ISIC_2019_Training_GroundTruth.csv").write_text(ISIC2019_TRUTH + "ISIC_1,1,0,0,0,0,0,0,0,0\n")
    (tmp_path / "ISIC_2019_Training_Metadata.csv").write_text("image,age_approx,anatom_site_general\nISIC_1,5,\n")
    with pytest.raises(ValueError, match=r"Metadata\.csv lacks column\(s\) gender"):
        read_isic2019(tmp_path, images=False)


def test_image_folder_on_real_ph2(real_images):
    table = read_image_folder(real_images)
    assert len(table) == 140 and table["label"].value_counts().to_dict() == {"nv": 112, "mel": 28}
    assert table["mask_path"].notna().all() and set(table["site"]) == {"unknown"}
    assert read_dataset(real_images).equals(table)


def test_image_folder_with_metadata(tmp_path, save_image):
    (tmp_path / "labels.csv").write_text(
        "image,label,age,sex,site\nA1.jpg,MEL,60,male,chest\nA2,nv,,,\nA3,df,30,female,posterior torso\n"
    )
    for name in ("A1", "A2", "A3"):
        save_image(tmp_path / "images" / f"{name}.png", size=(20, 20))
    save_image(tmp_path / "masks" / "A2_segmentation.png", size=(20, 20), mask_box=(1, 1, 5, 5))
    table = read_image_folder(tmp_path)
    assert table["image_id"].tolist() == ["A1", "A2", "A3"] and table["label"].tolist() == ["mel", "nv", "df"]
    assert table["site"].tolist() == ["anterior torso", "unknown", "posterior torso"]
    assert table["mask_path"].notna().tolist() == [False, True, False]
    with pytest.raises(ValueError, match=r"labels\.csv line 4 \(A3\): unknown label 'df': expected one of nv, mel"):
        read_image_folder(tmp_path, classes=("nv", "mel"))
    (tmp_path / "labels.csv").unlink()
    unlabelled = read_image_folder(tmp_path)
    assert unlabelled["label"].isna().all() and len(unlabelled) == 3


PH2_TABLE = """\
||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network | Dots/Globules | Streaks | Regression Areas | Blue-Whitish Veil ||           Colors ||
|| IMD003 ||                        ||                  0 ||         0 |               T |             A |       A |                A |                 A ||                4 ||
|| IMD009 ||                        ||                  1 ||         1 |              AT |             T |       A |                A |                 A ||             3  4 ||
|| IMD058 ||               Melanoma ||                  2 ||         2 |              AT |            AT |       P |                P |                 P ||       3  4  5  6 ||

Legends:
   Clinical Diagnosis:
         0 - Common Nevus;
         1 - Atypical Nevus;
         2 - Melanoma.
"""


def _ph2_folder(root: Path, save_image, table=PH2_TABLE) -> Path:
    (root / "PH2Dataset").mkdir(parents=True)
    (root / "PH2Dataset" / "PH2_dataset.txt").write_text(table)
    for case in ("IMD003", "IMD009", "IMD058"):
        folder = root / "PH2Dataset" / "PH2 Dataset images" / case
        save_image(folder / f"{case}_Dermoscopic_Image" / f"{case}.bmp", size=(38, 28))
        save_image(folder / f"{case}_lesion" / f"{case}_lesion.bmp", size=(38, 28), mask_box=(4, 4, 20, 20))
    return root


def test_ph2_original_layout(tmp_path, save_image):
    root = _ph2_folder(tmp_path, save_image)
    cases = parse_ph2_table(root / "PH2Dataset" / "PH2_dataset.txt")
    assert [(line, record["Name"], record["Clinical Diagnosis"]) for line, record in cases] == [
        (2, "IMD003", "0"), (3, "IMD009", "1"), (4, "IMD058", "2"),
    ]
    assert cases[2][1]["Histological Diagnosis"] == "Melanoma" and cases[2][1]["Colors"] == "3  4  5  6"
    table = read_ph2(root)
    assert table["image_id"].tolist() == ["IMD003", "IMD009", "IMD058"]
    assert table["label"].tolist() == ["nv", "nv", "mel"]
    assert table["mask_path"].str.endswith("_lesion.bmp").all() and set(table["source"]) == {"ph2"}
    assert read_dataset(root)["label"].tolist() == ["nv", "nv", "mel"]


def test_ph2_bad_diagnosis(tmp_path, save_image):
    root = _ph2_folder(tmp_path, save_image, PH2_TABLE.replace("||                  1 ||", "||                  7 ||"))
    with pytest.raises(ValueError, match=r"PH2_dataset\.txt line 3 \(IMD009\): unknown Clinical Diagnosis '7'"):
        read_ph2(root)
    assert read_ph2(root, on_error="skip")["image_id"].tolist() == ["IMD003", "IMD058"]


def test_read_dataset_detection(tmp_path, save_image):
    assert read_dataset(_ham_folder(tmp_path / "ham", save_image))["source"].eq("ham10000").all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"(?s)no known dataset layout in .*empty.*ham10000: HAM10000_metadata\.csv.*ph2"):
        read_dataset(tmp_path / "empty")


def test_read_dataset_asks_to_choose_between_layouts(shared_data):
    with pytest.raises(ValueError, match=r"several dataset layouts \(ham10000, isic2019, isic2018_task3\)"):
        read_dataset(shared_data)
    assert len(read_dataset(shared_data, layout="isic2018_task3", split="Validation", images=False)) == 193
