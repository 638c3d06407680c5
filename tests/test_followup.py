"""Follow-up comparison (``dermfuse/followup.py``) through the pipeline and the app's callbacks, with the shipped model.

A lesion paired with its own rotated, rescaled and slightly recoloured copy shows (almost) no change; two
HAM10000 images of one lesion compare end to end; a previous image that is not an image, not assessable
or shows no lesion gets words that say what to do, and the current diagnosis is still shown.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from dermfuse.followup import compare
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from dermfuse.ui import ModelCatalog, callbacks, examples, report
from conftest import ham10000_lesion_pair

DEFAULT = CHECKPOINTS / DEFAULT_MODEL
pytestmark = pytest.mark.skipif(not (DEFAULT / "config.json").is_file(), reason=f"{DEFAULT} is not in this copy")
OUTPUTS = {"scores": 4, "result": 7, "case": 9, "abcd": 10, "followup": 11, "followup_picture": 12}


@pytest.fixture(scope="module")
def catalog():
    return ModelCatalog.open(str(DEFAULT))


@pytest.fixture(scope="module")
def pipeline(catalog):
    return catalog.pipeline(catalog.default)


@pytest.fixture(scope="module")
def lesion() -> Image.Image:
    """A real dermoscopy image shipped with the app (CC0), its lesion well inside the frame. Not every example would
    do for the no-change test: a lesion filling most of the frame loses part of itself to the rotation, and a colour
    near the 5 % share that counts it, or a score near the model's boundary, can flip."""
    return Image.open(examples.EXAMPLES / "ISIC_0000000.jpg").convert("RGB")


def moved_copy(image: Image.Image, angle: float = 35, scale: float = 0.7) -> Image.Image:
    """The image rotated about its centre (corners filled with its median colour), rescaled and slightly recoloured."""
    fill = tuple(int(v) for v in np.median(np.asarray(image).reshape(-1, 3), axis=0))
    turned = image.rotate(angle, resample=Image.BILINEAR, fillcolor=fill)
    small = turned.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    pixels = np.asarray(small).astype(np.float32) * (1.04, 0.97, 0.95) + 3
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_a_lesion_against_its_own_moved_copy_shows_no_change(pipeline, lesion):
    current, previous = pipeline(lesion, explain=False), pipeline(moved_copy(lesion), explain=False)
    result = compare(current, previous)
    change = result.change
    assert abs(change["area_percent"]) < 5 and abs(change["equivalent_diameter_percent"]) < 3
    assert change["colour_count"] == 0 and change["colours_new"] == change["colours_gone"] == []
    assert max(abs(d) for d in change["scores"].values()) < 0.1 and not change["top_class_changed"]
    assert min(abs(result.alignment["rotation_deg"] - 325), abs(result.alignment["rotation_deg"] + 35)) <= 10
    assert result.alignment["scale"] == pytest.approx(1 / 0.7, rel=0.01)
    assert change["overlap_iou"] > 0.85 and not result.warnings
    assert result.picture.shape[0] == lesion.height and result.picture.shape[1] > 2 * lesion.width
    json.dumps(result.to_dict())


def test_a_previous_image_with_no_lesion_or_not_assessable_is_refused_in_words(pipeline, lesion):
    current = pipeline(lesion, explain=False)
    with pytest.raises(ValueError, match="No lesion was found in the previous image.*Use another image of the same lesion, taken earlier"):
        compare(current, replace(current, mask=np.zeros_like(current.mask)))
    with pytest.raises(ValueError, match="previous image is not assessable \\(Too blurred\\.\\)"):
        compare(current, replace(current, assessable=False, reasons=["Too blurred."]))
    with pytest.raises(ValueError, match="current image is not assessable"):
        compare(replace(current, assessable=False, reasons=["Too dark."]), current)


def test_two_images_of_one_ham10000_lesion_compare_in_the_page_report_and_json(catalog, shared_data, tmp_path):
    current, previous = ham10000_lesion_pair(shared_data)
    shown = callbacks.diagnose(catalog, current, "55", "male", "back", None, True, True, False, previous)
    assert shown[OUTPUTS["scores"]]  # the current diagnosis
    assert "Follow-up: change since the previous image" in shown[OUTPUTS["followup"]]
    assert "area (px of the current image)" in shown[OUTPUTS["followup"]] and "no millimetre scale" in shown[OUTPUTS["followup"]]
    assert shown[OUTPUTS["followup_picture"]].visible
    followup = shown[OUTPUTS["result"]]["followup"]
    assert followup["previous"]["image_id"] and followup["change"]["overlap_iou"] > 0
    assert "Stolz" in shown[OUTPUTS["abcd"]] and "D not computed" in shown[OUTPUTS["abcd"]]
    assert r"CIELAB L\*" in shown[OUTPUTS["abcd"]]  # L* written as such, not as emphasis
    case = shown[OUTPUTS["case"]]
    paths = report.write_case_report(case.image, case.diagnosis, tmp_path, case.name, case.followup)
    with Image.open(paths["png"]) as sheet:
        assert sheet.height > 1.9 * sheet.width  # two A4 pages, one under the other
    pdf = paths["pdf"].read_bytes()
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") == 2
    assert json.loads(paths["json"].read_text())["followup"]["change"] == followup["change"]


@pytest.mark.parametrize("kind", ["not_an_image", "not_assessable"])
def test_a_bad_previous_image_names_the_problem_and_the_diagnosis_still_shows(catalog, lesion, tmp_path, kind):
    current = tmp_path / "current.png"
    lesion.save(current)
    if kind == "not_an_image":
        previous = tmp_path / "notes.txt"
        previous.write_text("not a picture")
        expected = "the previous image could not be used: 'notes.txt' is not an image file"
    else:
        previous = tmp_path / "blank.png"
        Image.new("RGB", (400, 300), (150, 40, 60)).save(previous)
        expected = "The previous image is not assessable"
    shown = callbacks.diagnose(catalog, str(current), "", "unknown", "unknown", None, True, True, False, str(previous))
    assert shown[OUTPUTS["scores"]] and "Withheld" not in shown[OUTPUTS["result"]]  # the current diagnosis stands
    assert expected in shown[OUTPUTS["followup"]] and "No comparison" in shown[OUTPUTS["followup"]]
    assert ("Upload" if kind == "not_an_image" else "Use another image") in shown[OUTPUTS["followup"]]
    assert "clear the previous-image box" in shown[OUTPUTS["followup"]]
    assert not shown[OUTPUTS["followup_picture"]].visible
    assert shown[OUTPUTS["result"]]["followup"] is None and expected in shown[OUTPUTS["result"]]["followup_problem"]
    assert str(tmp_path) not in shown[OUTPUTS["followup"]]  # the user's file name, not the server's path


def test_the_compare_api_returns_the_current_result_with_its_followup(catalog, lesion, tmp_path):
    current, previous = tmp_path / "now.png", tmp_path / "before.png"
    lesion.save(current)
    moved_copy(lesion).save(previous)
    result = callbacks.compare_images(catalog, str(current), str(previous))
    assert result["top_class"] in result["classes"] and result["abcd"]["colours"]["score"] >= 1
    assert abs(result["followup"]["change"]["area_percent"]) < 5 and result["followup_problem"] is None
    alone = callbacks.compare_images(catalog, str(current), None)
    assert alone["followup"] is None and "no previous image" in alone["followup_problem"]


def test_an_image_that_is_not_assessable_shows_no_abcd(catalog, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), (150, 40, 60)).save(blank)
    shown = callbacks.diagnose(catalog, str(blank), "", "unknown", "unknown", None, True, True, False)
    assert "Not shown: the image is not assessable" in shown[OUTPUTS["abcd"]] and "Stolz" not in shown[OUTPUTS["abcd"]]
    assert shown[OUTPUTS["result"]]["abcd"] is None and shown[OUTPUTS["followup"]] == ""


def test_the_command_line_compares_two_images_and_names_a_bad_one(lesion, tmp_path, capsys):
    from dermfuse.cli import main

    current, previous, out = tmp_path / "now.png", tmp_path / "before.png", tmp_path / "out"
    lesion.save(current)
    moved_copy(lesion).save(previous)
    assert main(["followup", str(previous), str(current), "--model", str(DEFAULT), "--age", "60", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads((out / "followup.json").read_text())
    assert written["previous"]["image_id"] == "before" and written["current"]["image_id"] == "now"
    assert abs(written["change"]["area_percent"]) < 5 and written["model"]["dataset"]
    assert f"area {written['change']['area_percent']:+.1f} %" in printed and "no millimetre scale" in printed
    assert "trained on ham10000" in printed and "not a diagnosis" in printed
    with Image.open(out / "followup.png") as picture:
        assert picture.height == lesion.height and picture.width > 2 * lesion.width  # previous aligned | current
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), (150, 40, 60)).save(blank)
    assert main(["followup", str(blank), str(current), "--model", str(DEFAULT), "--out", str(out)]) == 2
    refusal = capsys.readouterr().err
    assert "The previous image is not assessable" in refusal and "Use another image" in refusal and "box" not in refusal
    assert written == json.loads((out / "followup.json").read_text())  # the earlier comparison is not overwritten
