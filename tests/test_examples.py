"""The real examples in ``examples/``: every image listed with its ISIC id, diagnosis and CC0 licence, small, unseen.

The app's use of them (gallery, picking, answering) is tested in ``test_app.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from dermfuse import vocab
from dermfuse.sources import CHECKPOINTS
from dermfuse.ui.examples import EXAMPLES, EXAMPLES_TABLE, real_examples
from publish.examples import LONGEST_SIDE, make_examples

TABLE_FILES = {EXAMPLES_TABLE, "README.md"}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(EXAMPLES / EXAMPLES_TABLE, newline="", encoding="utf-8") as table:
        return list(csv.DictReader(table))


def test_every_file_in_examples_is_in_the_table_with_licence_cc0(rows):
    images = {p.name for p in EXAMPLES.iterdir()} - TABLE_FILES
    assert images == {row["file"] for row in rows} and len(rows) == len(images) >= 4
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for row in rows:
        assert row["licence"] == "CC0" and row["source"].startswith("ISIC archive")
        assert row["file"] == f"{row['isic_id']}.jpg" and row["isic_id"].startswith("ISIC_")
        assert row["diagnosis"] in vocab.HAM10000_CLASSES
        assert f"| {row['isic_id']} | {vocab.DIAGNOSIS_NAMES[row['diagnosis']]} (`{row['diagnosis']}`) |" in readme
    assert {"mel", "nv"} <= {row["diagnosis"] for row in rows}  # a malignant and a benign diagnosis at least


def test_the_examples_are_small_real_photographs(rows):
    for row in rows:
        path = EXAMPLES / row["file"]
        assert path.stat().st_size < 100_000
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and max(image.size) == LONGEST_SIDE
            assert not image.getexif()  # nothing but pixels ships


def test_no_shipped_model_trained_on_an_example(rows):
    ids = {row["isic_id"] for row in rows}
    splits = sorted(CHECKPOINTS.glob("*/splits.csv"))
    assert splits, f"no shipped model with a splits.csv in {CHECKPOINTS}"
    for manifest in splits:
        with open(manifest, newline="", encoding="utf-8") as table:
            seen = {row["image_id"]: row["split"] for row in csv.DictReader(table) if row["image_id"] in ids}
        assert "train" not in seen.values(), f"{manifest.parent.name} trained on {seen}"


def test_the_app_reads_the_table_in_order(rows):
    examples = real_examples()
    assert [e.isic_id for e in examples] == [row["isic_id"] for row in rows]
    first = examples[0]
    assert Path(first.path).is_file() and first.licence == "CC0"
    assert first.age == (float(rows[0]["age"]) if rows[0]["age"] else None) and first.sex == rows[0]["sex"]


def test_a_broken_table_is_refused_with_a_clear_message(tmp_path):
    assert real_examples(tmp_path) == []  # a copy without examples/ shows an empty gallery
    (tmp_path / EXAMPLES_TABLE).write_text("file,isic_id,diagnosis,age,sex,site,licence,source\n"
                                           "ISIC_1.jpg,ISIC_1,mel,,,,CC0,ISIC archive\n")
    with pytest.raises(ValueError, match="lists ISIC_1.jpg, which is not in"):
        real_examples(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "ISIC_1.jpg")
    (tmp_path / EXAMPLES_TABLE).write_text("file,isic_id,diagnosis,age,sex,site,licence,source\n"
                                           "ISIC_1.jpg,ISIC_1,mel,,,,CC BY-NC 4.0,ISIC archive\n")
    with pytest.raises(ValueError, match="only CC0 images may ship"):
        real_examples(tmp_path)


def test_the_maker_shrinks_cc0_originals_and_refuses_other_licences(tmp_path):
    source = tmp_path / "cc0"
    (source / "images").mkdir(parents=True)
    Image.new("RGB", (1500, 1000), (170, 120, 100)).save(source / "images" / "ISIC_0000001.jpg")
    (source / "labels.csv").write_text('image,label,age,sex,site,licence\n'
                                       'ISIC_0000001,nv,30,female,,"CC0 (ISIC archive, UDA-1)"\n'
                                       'ISIC_0000002,mel,,,,"CC BY-NC 4.0 (ISIC archive)"\n')
    out = tmp_path / "examples"
    rows = make_examples(source, out, chosen=("ISIC_0000001",))
    assert rows == [{"file": "ISIC_0000001.jpg", "isic_id": "ISIC_0000001", "diagnosis": "nv", "age": "30",
                     "sex": "female", "site": "unknown", "licence": "CC0", "source": "ISIC archive, UDA-1"}]
    with Image.open(out / "ISIC_0000001.jpg") as image:
        assert image.size == (LONGEST_SIDE, 400)
    assert [e.isic_id for e in real_examples(out)] == ["ISIC_0000001"]
    with pytest.raises(ValueError, match="only CC0 images may ship"):
        make_examples(source, out, chosen=("ISIC_0000002",))
    with pytest.raises(ValueError, match="ISIC_0000003 is not in"):
        make_examples(source, out, chosen=("ISIC_0000003",))
