"""A dermatoscope's dark round frame: found, filled in from the skin, the image stream's view taken from the lit field."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA
from dermfuse import DermFuse, create_model
from dermfuse.data.field_of_view import NEAR_BLACK, dark_frame, lit_field
from dermfuse.data.phantom import generate_phantom
from dermfuse.data.transforms import image_view, view_box
from dermfuse.pipeline import FILLED_FRAME_CAUTION, LIT_FIELD_NOTE, DermFusePipeline
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL, DEMO_MODEL
from experiments.dark_frame import (DRAWN_FRAMES, LEAST_REAL_FRAME, LIMITS, DarkFrameConfig, frame_share, real_framed,
                                    round_frame, rule)
from experiments.report_sections import dark_frame_section
from publish.card import _preprocessing


@pytest.fixture(scope="module")
def skin() -> np.ndarray:
    """A 240×240 phantom lesion on skin, without its scope frame."""
    return generate_phantom("nv", seed=3, size=240, nuisances=False).image


def field_of(image: np.ndarray) -> np.ndarray:
    """The pixels round_frame left lit (R + G + B well above the frame's)."""
    return image.astype(int).sum(axis=2) > 3 * NEAR_BLACK


def test_an_image_without_a_frame_is_returned_as_it_is(skin):
    assert dark_frame(skin) is None
    filled, field = lit_field(skin)
    assert filled is skin and field is None


@pytest.mark.parametrize("across, aspect", DRAWN_FRAMES.values())
def test_a_round_frame_is_filled_from_the_skin_and_the_field_boxed(skin, across, aspect):
    framed = round_frame(skin, across, aspect)
    filled, (x0, y0, x1, y1) = lit_field(framed)
    lit = field_of(framed)
    rows, columns = np.nonzero(lit)
    # The box is the lit field's, give or take the rim the frame was grown over (3 % of the longer side).
    slack = 0.04 * max(framed.shape[:2])
    assert abs(x0 - columns.min()) <= slack and abs(x1 - columns.max() - 1) <= slack
    assert abs(y0 - rows.min()) <= slack and abs(y1 - rows.max() - 1) <= slack
    assert (filled.astype(int).sum(axis=2) > NEAR_BLACK).all()  # no frame left
    rim = round(0.05 * max(framed.shape[:2]))  # more than the rim the frame was grown over
    inside = cv2.erode(lit.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1,) * 2)).astype(bool)
    assert inside.mean() > 0.6 * lit.mean() and (filled[inside] == framed[inside]).all()  # the field itself untouched
    # Filled with skin, not with something new: each channel's mean near the skin's at the field's edge.
    frame = ~lit
    assert np.abs(filled[frame].mean(axis=0) - framed[lit].mean(axis=0)).max() < 60


def test_a_light_line_at_the_edge_does_not_hide_the_frame(skin):
    framed = round_frame(skin, 0.9, 4 / 3)
    framed[0, :], framed[:, -1] = 255, 230
    assert frame_share(framed) > 0.2
    assert (lit_field(framed)[0].astype(int).sum(axis=2) > NEAR_BLACK).all()


def test_a_dark_image_is_not_taken_for_a_frame():
    dark = np.full((200, 300, 3), 8, np.uint8)
    dark[80:120, 130:170] = 90  # a small lit patch: too little to be a dermatoscope's field
    assert dark_frame(dark) is None and lit_field(dark)[1] is None


def test_the_image_stream_sees_the_framing_within_the_field():
    assert view_box(400, 300, "central_square", (100, 20, 300, 280)) == (100, 50, 300, 250)
    assert view_box(400, 300, "whole", (100, 20, 300, 280)) == (100, 20, 300, 280)
    assert view_box(400, 300, "central_square") == (50, 0, 350, 300)
    frame = np.arange(300 * 400).reshape(300, 400)
    assert image_view(frame, "central_square", (100, 20, 300, 280)).shape == (200, 200)


def test_the_model_checks_and_keeps_its_dark_frame(tmp_path):
    with pytest.raises(ValueError, match="dark_frame 'cropped'.*kept, filled"):
        create_model("tiny", dark_frame="cropped")
    model = create_model("tiny")
    assert model.dark_frame == "kept"
    model.update_config(dark_frame="filled")
    model.save_pretrained(tmp_path)
    assert DermFuse.from_pretrained(str(tmp_path)).dark_frame == "filled"
    with pytest.raises(ValueError, match="dark_frame"):
        model.update_config(dark_frame=True)


def test_the_pipeline_fills_a_frame_only_for_a_model_that_asks_and_says_so(skin):
    model = DermFuse.from_pretrained(str(CHECKPOINTS / DEMO_MODEL))  # its segmenter finds the phantom's lesion
    pipeline = DermFusePipeline(model, fast=False)
    framed = round_frame(skin, 0.8, 4 / 3)
    kept = pipeline(framed, explain=True)
    plain = pipeline(skin, explain=False)
    model.update_config(dark_frame="filled")
    filled = pipeline(framed, explain=True)
    assert FILLED_FRAME_CAUTION not in kept.warnings and LIT_FIELD_NOTE not in kept.heatmap_notes.get("image", "")
    assert filled.assessable and FILLED_FRAME_CAUTION in filled.warnings and LIT_FIELD_NOTE in filled.heatmap_notes["image"]
    assert (kept.model["dark_frame"], filled.to_dict()["model"]["dark_frame"]) == ("kept", "filled")  # predictions.json
    assert not np.allclose(filled.probabilities, kept.probabilities)
    np.testing.assert_array_equal(filled.mask, kept.mask)  # the segmenter sees the image as it is
    # The image stream's map covers the lit field (framed as the model says), and nothing outside it.
    _, field = lit_field(framed)
    x0, y0, x1, y1 = view_box(framed.shape[1], framed.shape[0], model.image_framing, field)
    outside = np.ones(framed.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert filled.heatmaps["image"][outside].max() == 0
    again = pipeline(skin, explain=False)  # without a frame the fill changes nothing
    assert again.probabilities == plain.probabilities and FILLED_FRAME_CAUTION not in again.warnings


def made_up_report(filled_nll: float) -> dict:
    entry = lambda bacc, nll, changed=None: {"images": 10, "balanced_accuracy": bacc, "macro_auc": 0.9,  # noqa: E731
                                             "melanoma_auc": 0.8, "nll": nll, "flagged": 0.1, "segmenter_dice": 0.9, **({} if changed is None else {"top_changed": changed})}
    sets = {"validation": {"framed_images": 0, "kept": entry(0.70, 0.8, 0.0), "filled": entry(0.70, 0.8, 0.0)},
            **{name: {"framed_images": 10, "kept": entry(0.50, 1.2, 0.3), "filled": entry(0.60, 1.0, 0.2)}
               for name in DRAWN_FRAMES},
            "real framed": {"framed_images": 10, "kept": entry(0.6, 0.78), "filled": entry(0.6, filled_nll)},
            "PH2": {"framed_images": 0, "kept": entry(0.7, 0.6), "filled": entry(0.7, 0.6)}}
    return sets


@pytest.mark.parametrize("filled_nll, holds", [(0.75, True), (0.83, False)])
def test_the_rule_and_its_section(filled_nll, holds):
    sets = made_up_report(filled_nll)
    held = rule(sets)
    assert all(held.values()) is holds and held["real framed log-loss not higher"] is holds
    report = {"sets": sets, "limits": LIMITS, "rule": held, "rule_holds": holds, "stored": holds, "path": "fp32",
              "command": "python -m experiments.dark_frame", "minutes": 1.0}
    text = dark_frame_section(report, "docs/results/dark_frame.json")
    assert ("stores `dark_frame: filled`" in text) is holds
    assert ("real framed log-loss not higher), so the model keeps" in text) is not holds
    assert text.count("| kept |") == text.count("| filled |") == len(sets)


RESULTS = CHECKPOINTS.parent / "docs" / "results" / "dark_frame.json"


def test_the_readme_quotes_the_committed_study_and_the_shipped_model_follows_its_rule():
    report = json.loads(RESULTS.read_text(encoding="utf-8"))
    readme = " ".join((CHECKPOINTS.parent / "README.md").read_text(encoding="utf-8").split())
    sets = report["sets"]
    square, wide = (sets[name] for name in DRAWN_FRAMES)
    real, validation = sets["real framed"], sets["validation"]
    flagged_real = round(real["kept"]["flagged"] * real["kept"]["images"])
    for said in (f"changed the top class on {100 * square['kept']['top_changed']:.1f} % of them",
                 f"and {100 * wide['kept']['top_changed']:.1f} %",
                 f"balanced accuracy fell from {validation['kept']['balanced_accuracy']:.3f} to "
                 f"{square['kept']['balanced_accuracy']:.3f} and {wide['kept']['balanced_accuracy']:.3f}",
                 f"and {flagged_real} of the {real['kept']['images']} real framed images",
                 f"back to {square['filled']['balanced_accuracy']:.3f} and {wide['filled']['balanced_accuracy']:.3f}",
                 f"({validation['framed_images']} of the {validation['kept']['images']:,} hold a frame)",
                 f"raised balanced accuracy from {real['kept']['balanced_accuracy']:.3f} to "
                 f"{real['filled']['balanced_accuracy']:.3f} and melanoma AUC from {real['kept']['melanoma_auc']:.3f} to "
                 f"{real['filled']['melanoma_auc']:.3f}",
                 f"log-loss rose from {real['kept']['nll']:.3f} to {real['filled']['nll']:.3f}",
                 f"Dice {validation['kept']['segmenter_dice']:.3f} → {square['kept']['segmenter_dice']:.3f} and "
                 f"{wide['kept']['segmenter_dice']:.3f}"):
        assert said in readme, said
    assert square["kept"]["flagged"] == wide["kept"]["flagged"] == 1.0  # "flagged every one of them"
    stored = json.loads((CHECKPOINTS / DEFAULT_MODEL / "config.json").read_text(encoding="utf-8"))
    assert stored.get("dark_frame", "kept") == ("filled" if report["stored"] else "kept")
    assert not report["rule_holds"] and "shipped model keeps the frame as it is" in readme


def test_the_model_card_says_when_a_frame_is_filled_in():
    config = json.loads((CHECKPOINTS / DEFAULT_MODEL / "config.json").read_text(encoding="utf-8"))
    assert "lit field" not in _preprocessing({**config, "dark_frame": "kept"})
    assert "filled in from the skin next to it" in _preprocessing({**config, "dark_frame": "filled"})


@pytest.mark.skipif(not (SHARED_DATA / "ISIC2018_Task1").is_dir(),
                    reason=f"the ISIC 2018 Task 1 images are not at {SHARED_DATA} (they live beside the repository)")
def test_the_real_framed_images_are_those_the_committed_study_scored_each_once():
    rows, images = real_framed(DarkFrameConfig(model=str(CHECKPOINTS / DEFAULT_MODEL), data=str(SHARED_DATA)))
    report = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert len(rows) == len(images) == report["sets"]["real framed"]["kept"]["images"]
    assert rows["image_id"].is_unique and set(rows["label"]) <= {"mel", "nv", "bkl"}
    assert all(frame_share(image) >= LEAST_REAL_FRAME for image in images)


def test_the_shipped_model_card_quotes_the_committed_study():
    report = json.loads(RESULTS.read_text(encoding="utf-8"))
    card = " ".join((CHECKPOINTS / DEFAULT_MODEL / "README.md").read_text(encoding="utf-8").split())
    square, wide = (report["sets"][name]["kept"] for name in DRAWN_FRAMES)
    validation = report["sets"]["validation"]["kept"]
    assert (f"changed the top class on {100 * square['top_changed']:.1f} % (a field inscribed in the square image) and "
            f"{100 * wide['top_changed']:.1f} %") in card
    assert (f"lowered balanced accuracy from {validation['balanced_accuracy']:.3f} to {square['balanced_accuracy']:.3f} "
            f"and {wide['balanced_accuracy']:.3f}. The app flagged every one of them") in card
    assert square["flagged"] == wide["flagged"] == 1.0
