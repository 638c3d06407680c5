"""The ``dermfuse`` command line: info, predict (image / folder / CSV), ISIC submission files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dermfuse import create_model
from dermfuse.cli import main
from dermfuse.data.phantom import generate_phantom
from dermfuse.vocab import HAM10000_CLASSES

from conftest import colour_bars_in


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    create_model("tiny").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i, label in enumerate(HAM10000_CLASSES[:3]):
        image = generate_phantom(label, seed=i, size=200).image
        Image.fromarray(image[:, : 180 + 7 * i]).save(folder / f"case{i}.jpg")  # non-square, different sizes
    return folder


def test_info_prints_parameter_counts(capsys):
    assert main(["info", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and f"{sum(p.numel() for p in create_model('tiny').parameters()):,}" in out


def test_predict_folder_writes_csv_json_overlays_and_isic_files(model_dir, image_folder, tmp_path):
    out = tmp_path / "out"
    # An untrained stand-in model finds no real lesion, so its images are not assessable: ask for the scores.
    code = main(["predict", str(image_folder), "--model", str(model_dir), "--out", str(out), "--overlays",
                 "--isic-submission", "--age", "45", "--sex", "female", "--site", "back", "--scores-if-not-assessable"])
    assert code == 0
    table = pd.read_csv(out / "predictions.csv")
    assert list(table["image"]) == ["case0", "case1", "case2"]
    probabilities = table[[f"p_{c}" for c in HAM10000_CLASSES]].to_numpy()
    assert np.allclose(probabilities.sum(1), 1, atol=1e-5)
    records = json.loads((out / "predictions.json").read_text())
    assert [r["metadata"]["site"] for r in records] == ["posterior torso"] * 3
    assert [r["image_id"] for r in records] == ["case0", "case1", "case2"]  # each file's name, as in the CSV
    for field, column in (("name", "model"), ("revision", "model_revision"), ("dataset", "trained_on")):  # where they came from
        assert list(table[column]) == [r["model"][field] for r in records]
    for i in range(3):  # a titled figure per image with a colour bar under each of the two heatmaps
        with Image.open(out / "overlays" / f"case{i}.png") as overlay:
            assert overlay.size[0] == 1100 and overlay.size[1] > 500  # 11 inches at 100 dpi, its footer under the pictures
            assert colour_bars_in(np.asarray(overlay.convert("RGB"))) == 2
    assert set(table["heatmap_method_image"]) <= {"Grad-CAM", "Grad-CAM++"}
    submission = pd.read_csv(out / "isic_submission" / "classification.csv")
    assert list(submission.columns) == ["image", "AKIEC", "BCC", "BKL", "DF", "MEL", "NV", "VASC"]
    for i in range(3):
        mask = Image.open(out / "isic_submission" / f"case{i}_segmentation.png")
        assert mask.mode == "L" and mask.size == Image.open(image_folder / f"case{i}.jpg").size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}


def test_predict_csv_with_metadata(model_dir, image_folder, tmp_path):
    pd.DataFrame({"image": ["case0", "case1.jpg"], "age": [30, None], "sex": ["male", ""],
                  "site": ["face", "acral"]}).to_csv(image_folder / "cases.csv", index=False)
    out = tmp_path / "out"
    assert main(["predict", str(image_folder / "cases.csv"), "--model", str(model_dir), "--out", str(out)]) == 0
    records = json.loads((out / "predictions.json").read_text())
    assert [r["metadata"] for r in records] == [
        {"age": 30.0, "sex": "male", "site": "head/neck"}, {"age": None, "sex": "unknown", "site": "palms/soles"}]


@pytest.mark.parametrize("layout", ["ham10000", "isic"])
def test_predict_reads_the_official_tables_column_names_and_their_image_folders(model_dir, image_folder, tmp_path, layout):
    """HAM10000's metadata table (image_id, age, sex, localization) beside its two image folders, and ISIC's (image,
    age_approx, gender, anatom_site_general) beside an images/ folder: their patient data reach the model, none
    silently dropped."""
    root = tmp_path / layout
    if layout == "ham10000":  # as the download unpacks: HAM10000_images_part_1/ and _part_2/
        for part, case in ((1, "case0"), (2, "case1")):
            (root / f"HAM10000_images_part_{part}").mkdir(parents=True)
            shutil.copy(image_folder / f"{case}.jpg", root / f"HAM10000_images_part_{part}")
    else:
        shutil.copytree(image_folder, root / "images")
    columns = ({"image_id": ["case0", "case1"], "age": [30, None], "sex": ["male", "unknown"], "localization": ["face", "acral"]}
               if layout == "ham10000" else
               {"image": ["case0", "case1"], "age_approx": [30, None], "gender": ["male", ""],
                "anatom_site_general": ["head/neck", "palms/soles"]})
    pd.DataFrame(columns).to_csv(root / "metadata.csv", index=False)
    out = tmp_path / "out"
    assert main(["predict", str(root / "metadata.csv"), "--model", str(model_dir), "--out", str(out)]) == 0
    records = json.loads((out / "predictions.json").read_text())
    assert [r["image_id"] for r in records] == ["case0", "case1"]
    assert [r["metadata"] for r in records] == [
        {"age": 30.0, "sex": "male", "site": "head/neck"}, {"age": None, "sex": "unknown", "site": "palms/soles"}]


def test_a_csv_without_an_image_column_says_which_names_it_takes(model_dir, image_folder, tmp_path, capsys):
    pd.DataFrame({"file": ["case0"]}).to_csv(tmp_path / "cases.csv", index=False)
    assert main(["predict", str(tmp_path / "cases.csv"), "--model", str(model_dir), "--out", str(tmp_path / "out")]) == 2
    assert "has no 'image' (or 'image_id') column (columns: file)" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["/no/such/file.jpg"], "does not exist"),
    (["IMAGE", "--age", "-5"], "impossible"),
    (["IMAGE", "--site", "moon"], "unknown lesion site"),
])
def test_predict_bad_input_is_a_clear_error(model_dir, image_folder, tmp_path, capsys, args, message):
    args = [str(image_folder / "case0.jpg") if a == "IMAGE" else a for a in args]
    assert main(["predict", *args, "--model", str(model_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_folder_with_unreadable_files_is_refused_before_any_image_is_diagnosed(model_dir, image_folder, tmp_path, capsys):
    """Each bad file named, in seconds, rather than an error at its batch after the others were diagnosed."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("case0.jpg", "case1.jpg"):
        (folder / name).write_bytes((image_folder / name).read_bytes())
    (folder / "notes.jpg").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--model", str(model_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"2 of the 4 images in {folder} cannot be diagnosed, so none was: fix or remove these" in err
    assert "notes.jpg is not an image file PIL can read" in err and "empty.png is empty (0 bytes)" in err
    assert "case0" not in err and "Traceback" not in err and not out.exists()


def test_a_truncated_file_costs_its_own_result_and_is_named(model_dir, image_folder, tmp_path, capsys):
    """Its header reads, so the folder is not refused; its pixels do not, so it fails when decoded. The others in its
    batch and after it are diagnosed and written, it is named, and the exit status says not all went through."""
    folder = tmp_path / "truncated"
    folder.mkdir()
    for name in ("case0.jpg", "case1.jpg", "case2.jpg"):
        (folder / name).write_bytes((image_folder / name).read_bytes())
    whole = (image_folder / "case1.jpg").read_bytes()
    (folder / "case1.jpg").write_bytes(whole[: len(whole) // 3])
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--model", str(model_dir), "--out", str(out), "--batch-size", "2",
                 "--isic-submission"]) == 1
    err = capsys.readouterr().err
    assert "1 of the 3 images could not be decoded and are not in the files written (the 2 others are; the ISIC" in err
    assert "case1:" in err and "truncated or corrupt" in err and "Traceback" not in err
    assert pd.read_csv(out / "predictions.csv")["image"].tolist() == ["case0", "case2"]
    assert main(["predict", str(folder / "case1.jpg"), "--model", str(model_dir), "--out", str(tmp_path / "one")]) == 2
    assert "no image could be decoded, so nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "one").exists()


def test_a_csv_with_bad_rows_names_each_line(model_dir, image_folder, tmp_path, capsys):
    pd.DataFrame({"image": ["case0", "case1", "missing", "case2"], "age": [30, -5, 40, 50],
                  "sex": ["male", "female", "male", "robot"]}).to_csv(image_folder / "bad.csv", index=False)
    assert main(["predict", str(image_folder / "bad.csv"), "--model", str(model_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "3 of the 4 images in" in err and "line 2" not in err
    assert "line 3 (case1): age -5 is impossible" in err and "line 5 (case2): unknown sex 'robot'" in err
    assert ("line 4 (missing): no such image in the CSV's folder or a folder in it (such as images/), as a path or as "
            "missing.jpg / .png / …") in err


def test_predict_refuses_pickle_model(image_folder, tmp_path, capsys):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    assert main(["predict", str(image_folder / "case0.jpg"), "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "unpickling" in capsys.readouterr().err


def test_evaluate_phantom_set_with_manifest(model_dir, tmp_path):
    from dermfuse.data import make_splits, read_dataset, write_manifest
    from dermfuse.data.phantom import generate_dataset

    root = tmp_path / "phantoms"
    generate_dataset(root, n=28, seed=5, size=160)
    table = make_splits(read_dataset(root), fractions=(0.5, 0.25, 0.25), seed=0)
    write_manifest(table, tmp_path / "manifest.csv")
    out = tmp_path / "eval"
    assert main(["evaluate", str(root), "--model", str(model_dir), "--manifest", str(tmp_path / "manifest.csv"),
                 "--split", "test", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    test_size = int((table["split"] == "test").sum())
    assert metrics["images"] == metrics["segmentation"]["images"] == metrics["classification"]["cases"] == test_size
    assert 0 <= metrics["segmentation"]["dice"] <= 1 and 0 <= metrics["classification"]["balanced_accuracy"] <= 1
    assert {p.name for p in out.iterdir()} == {"metrics.json", "confusion_matrix.png", "roc_curves.png", "reliability.png"}


def test_predict_withholds_the_scores_of_an_image_it_cannot_assess(model_dir, tmp_path, capsys):
    Image.new("RGB", (160, 120), (255, 255, 255)).save(tmp_path / "blank.png")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "blank.png"), "--model", str(model_dir), "--out", str(out)]) == 0
    assert "blank: NOT ASSESSABLE, no diagnosis" in capsys.readouterr().out
    row = pd.read_csv(out / "predictions.csv").iloc[0]
    assert not row["assessable"] and row["reasons"].startswith("The image is blank") and "top_class" not in row
    record = json.loads((out / "predictions.json").read_text())[0]
    assert record["scores_withheld"] and record["probabilities"] is None and record["top_class"] is None


def test_a_csv_may_name_an_image_by_its_path_without_the_suffix(model_dir, image_folder, tmp_path):
    (tmp_path / "cases" / "deeper").mkdir(parents=True)
    shutil.copy(image_folder / "case2.jpg", tmp_path / "cases" / "deeper" / "case2.jpg")
    pd.DataFrame({"image": ["deeper/case2"]}).to_csv(tmp_path / "cases" / "cases.csv", index=False)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "cases" / "cases.csv"), "--model", str(model_dir), "--out", str(out)]) == 0
    assert [r["image_id"] for r in json.loads((out / "predictions.json").read_text())] == ["case2"]
