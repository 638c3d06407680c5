"""Melanoma operating points: thresholds that meet their rule on the data they were fitted on, the sentence
that places a case against them, their round trip through a model's config, and the pipeline's use of them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dermfuse import create_model
from dermfuse.data.phantom import generate_phantom
from dermfuse.diagnosis import Diagnosis
from dermfuse.models import DermFuse
from dermfuse.operating_points import fit_operating_points, measure, place, rates, statement, threshold_for
from dermfuse.pipeline import DermFusePipeline
from dermfuse.ui import report, views


@pytest.fixture(scope="module")
def scores():
    """600 cases, 80 positives: positives score higher on average, with overlap and some ties."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(80, bool), np.zeros(520, bool)]
    values = np.r_[rng.beta(5, 2, 80), rng.beta(2, 5, 520)].round(3)  # rounding makes ties
    return labels, values


@pytest.mark.parametrize("target, value", [("sensitivity", 0.95), ("sensitivity", 0.8), ("specificity", 0.8),
                                           ("specificity", 0.95)])
def test_the_threshold_meets_its_rule_and_is_the_best_that_does(scores, target, value):
    labels, values = scores
    threshold = threshold_for(labels, values, target, value)
    sensitivity, specificity = rates(labels, values, threshold)
    achieved, other = (sensitivity, specificity) if target == "sensitivity" else (specificity, sensitivity)
    assert achieved >= value
    # The next distinct score on the side that would help the other rate breaks the rule.
    distinct = np.unique(values)
    nearer = distinct[distinct > threshold].min() if target == "sensitivity" else distinct[distinct < threshold].max()
    moved = rates(labels, values, nearer)
    assert (moved[0] if target == "sensitivity" else moved[1]) < value
    assert (moved[1] if target == "sensitivity" else moved[0]) >= other


def test_fit_records_thresholds_rates_and_counts(scores):
    labels, values = scores
    fitted = fit_operating_points(labels, values)
    assert fitted["class"] == "mel" and fitted["fitted_on"] == "val"
    assert fitted["images"] == 600 and fitted["positives"] == 80
    sensitivity_rule, specificity_rule = fitted["points"]
    assert sensitivity_rule["target"] == "sensitivity" and sensitivity_rule["sensitivity"] >= 0.95
    assert specificity_rule["target"] == "specificity" and specificity_rule["specificity"] >= 0.80
    json.dumps(fitted)  # JSON-ready for config.json
    again = measure(fitted, labels, values)
    assert [p["sensitivity"] for p in again] == [p["sensitivity"] for p in fitted["points"]]


def test_perfectly_separated_scores_and_one_class_only():
    labels = np.array([0, 0, 0, 1, 1], bool)
    fitted = fit_operating_points(labels, np.array([0.1, 0.2, 0.3, 0.8, 0.9]))
    assert all(p["sensitivity"] == 1.0 and p["specificity"] == 1.0 for p in fitted["points"])
    with pytest.raises(ValueError, match="needs both mel and other cases"):
        fit_operating_points(np.zeros(5, bool), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="between 0 and 1"):
        fit_operating_points(labels, np.linspace(0, 1, 5), targets=(("sensitivity", 95),))


def test_the_statement_names_the_rule_and_where_the_case_falls():
    point = {"target": "sensitivity", "value": 0.95, "threshold": 0.12, "sensitivity": 0.952, "specificity": 0.54}
    above = statement(0.31, point)
    assert above == ("Melanoma score 0.31: at or above the threshold 0.12 set for 95 % melanoma sensitivity on validation "
                     "data (validation specificity 0.54), so this rule flags the lesion.")
    below = statement(0.05, {**point, "target": "specificity", "value": 0.8})
    assert "below the threshold 0.12 set for 80 % melanoma specificity" in below
    assert "(validation sensitivity 0.95)" in below and below.endswith("does not flag it.")
    assert "score 0.121:" in statement(0.121, point) and "threshold 0.120" in statement(0.121, point)  # told apart


def test_place_gives_one_record_per_point_and_nothing_without_points():
    fitted = fit_operating_points(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.3, 0.6, 0.9]))
    placed = place([0.2, 0.8], ["nv", "mel"], fitted)
    assert [p["flagged"] for p in placed] == [True, True] and placed[0]["score"] == 0.8
    assert placed[0]["validation_images"] == 4 and placed[0]["validation_positives"] == 2
    assert place([0.2, 0.8], ["nv", "mel"], None) is None
    assert place([0.5, 0.5], ["nv", "bkl"], fitted) is None  # a model without a melanoma class


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory):
    """A tiny model with operating points and a training skin-tone distribution, saved and loaded back."""
    torch.manual_seed(0)
    model = create_model("tiny")
    points = fit_operating_points(np.array([0, 0, 1, 1], bool), np.array([0.01, 0.05, 0.2, 0.4]))
    tones = {"split": "train", "images": 100, "measured": 100, "counts": {"very light": 100, "light": 0,
             "intermediate": 0, "tan": 0, "brown": 0, "dark": 0}, "colour_cast": 0, "rare_share": 0.02, "how": "test"}
    model.update_config(operating_points=points, skin_tone=tones)
    folder = tmp_path_factory.mktemp("fitted")
    model.save_pretrained(folder)
    return DermFuse.from_pretrained(str(folder)), folder


def test_operating_points_and_skin_tones_round_trip_through_config_json(fitted_model):
    model, folder = fitted_model
    stored = json.loads((folder / "config.json").read_text())
    assert stored["operating_points"] == model.operating_points and stored["skin_tone"] == model.skin_tone
    assert model.operating_points["points"][0]["target"] == "sensitivity"


def test_the_pipeline_places_the_case_and_the_json_app_and_sheet_say_so(fitted_model):
    model, _ = fitted_model
    pipeline = DermFusePipeline(model, fast=False)
    phantom = generate_phantom("mel", seed=3, size=160)
    result = pipeline(phantom.image, mask=phantom.mask, explain=False)
    assert [p["rule"] for p in result.operating_points] == ["95 % melanoma sensitivity", "80 % melanoma specificity"]
    melanoma = result.scores()["mel"]
    assert all(p["flagged"] == (melanoma >= p["threshold"]) and p["score"] == melanoma for p in result.operating_points)
    data = json.loads(result.to_json())
    assert data["operating_points"] == result.operating_points and data["skin_tone"] == result.skin_tone
    again = Diagnosis.from_json(result.to_json(arrays=True))
    assert again.operating_points == result.operating_points and again.skin_tone == result.skin_tone
    reading = views.reading(result)
    assert "### Melanoma operating points" in reading and result.operating_points[0]["statement"] in reading
    assert "### Skin tone around the lesion" in reading and "Chardon" in reading and "Del Bino" in reading
    sheet = report.sheet_text(result)
    assert "Melanoma score" in sheet.replace("\n", " ") and "Skin tone around the lesion" in sheet
    # The warnings qualify the score: they come right under it, before anything else the sheet says
    assert sheet.index("Highest score") < sheet.index("Warnings:") < sheet.index("Melanoma score")
    # The teaching view's blinded lesion stream is not the model the thresholds were set for.
    assert pipeline(phantom.image, mask=phantom.mask, explain=False, lesion_stream=False).operating_points is None


def test_a_skin_tone_rare_in_training_adds_a_caution(fitted_model):
    model, _ = fitted_model
    pipeline = DermFusePipeline(model, fast=False)
    phantom = generate_phantom("nv", seed=1, size=160)
    result = pipeline(phantom.image, mask=phantom.mask, explain=False)
    tone = result.skin_tone
    if tone["band"] in (None, "very light"):
        pytest.skip(f"this phantom's skin measured {tone['band']}: not a band the stand-in distribution lacks")
    assert tone["rare_in_training"] and tone["training_share"] == 0.0
    assert any("rare among this model's training images" in w for w in result.warnings) == result.assessable


def test_scores_withheld_means_the_operating_points_too(fitted_model):
    model, _ = fitted_model
    result = DermFusePipeline(model, fast=False)(np.full((200, 200, 3), 128, np.uint8), explain=False)
    result.assessable = False
    data = result.to_dict()
    assert data["scores_withheld"] and data["operating_points"] is None


def test_a_model_without_operating_points_says_nothing_of_them():
    torch.manual_seed(0)
    model = create_model("tiny")
    phantom = generate_phantom("nv", seed=2, size=128)
    result = DermFusePipeline(model, fast=False)(phantom.image, mask=phantom.mask, explain=False)
    assert result.operating_points is None and "operating points" not in views.reading(result)
    assert "skin_tone" in result.to_dict() and "training_share" not in result.skin_tone


def test_a_long_case_sheet_shrinks_its_text_to_end_above_the_disclaimer(fitted_model):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    model, _ = fitted_model
    phantom = generate_phantom("mel", seed=3, size=160)
    result = DermFusePipeline(model, fast=False)(phantom.image, mask=phantom.mask, explain=False)
    result.warnings = [f"Warning number {i}: " + "a long sentence that wraps. " * 6 for i in range(4)]
    figure = report.case_sheet(phantom.image, result)
    renderer = FigureCanvasAgg(figure).get_renderer()
    words = next(t for t in figure.texts if "Warnings:" in t.get_text())
    assert words.get_window_extent(renderer).y0 >= report.TEXT_BOTTOM * figure.bbox.height - 1
    assert report.SMALLEST_TEXT <= words.get_fontsize() < 8
