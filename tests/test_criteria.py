"""The ABCD criteria (``dermfuse/criteria.py``): known answers on drawn shapes, plausible ranges on real PH2 images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from dermfuse import criteria
from dermfuse.criteria import COLOUR_REFERENCES, SKIN_CHROMA, lesion_criteria
from dermfuse.data.io import load_image_and_mask
from dermfuse.measure import measure_lesion

SIZE = (300, 400)  # (H, W)


def rgb(lab) -> tuple[int, int, int]:
    """A CIELAB colour as sRGB uint8."""
    pixel = cv2.cvtColor(np.array([[lab]], np.float32), cv2.COLOR_Lab2RGB)[0, 0]
    return tuple(int(round(255 * v)) for v in np.clip(pixel, 0, 1))


SKIN = rgb((70.0, *SKIN_CHROMA))  # a skin that the white balance leaves as it is


def canvas() -> np.ndarray:
    return np.full((*SIZE, 3), SKIN, np.uint8)


def ellipse(axes=(120, 50), angle=30, centre=(200, 150)) -> np.ndarray:
    mask = np.zeros(SIZE, np.uint8)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
    return mask > 0


def painted(mask: np.ndarray, colour: str) -> np.ndarray:
    image = canvas()
    image[mask] = rgb(COLOUR_REFERENCES[colour])
    return image


def test_a_uniform_symmetric_sharp_lesion_scores_a0_b8_c1():
    mask = ellipse()
    result = lesion_criteria(painted(mask, "dark brown"), mask)
    assert result.asymmetry.score == 0
    assert all(a["shape_non_overlap"] < 0.02 and a["colour_difference"] < 0.02 for a in result.asymmetry.numbers["axes"])
    assert result.border.score == 8
    assert result.colours.score == 1 and result.colours.numbers["colours"] == ["dark brown"]
    assert result.partial_score == pytest.approx(1.3 * 0 + 0.1 * 8 + 0.5 * 1)


def test_a_disc_scores_symmetric_and_its_blurred_edge_is_not_abrupt():
    mask = ellipse(axes=(80, 80), angle=0)
    image = painted(mask, "light brown")
    assert lesion_criteria(image, mask).asymmetry.score == 0
    blurred = cv2.GaussianBlur(image, (0, 0), 25)  # the pigment fades into the skin over ~half the radius
    border = lesion_criteria(blurred, mask).border
    assert border.score == 0 and all(s["steepest_share"] < criteria.ABRUPT_SHARE for s in border.numbers["segments"])


def test_a_two_lobed_lesion_is_asymmetric_in_shape():
    mask = np.zeros(SIZE, np.uint8)
    cv2.circle(mask, (170, 150), 70, 1, -1)
    cv2.circle(mask, (262, 150), 35, 1, -1)
    mask = mask > 0
    result = lesion_criteria(painted(mask, "dark brown"), mask)
    assert result.asymmetry.score >= 1
    assert any(a["asymmetric_in_shape"] for a in result.asymmetry.numbers["axes"])


def test_a_lesion_dark_on_one_side_is_asymmetric_in_colour_not_in_shape():
    mask = ellipse(angle=0)
    image = painted(mask, "light brown")
    image[mask & (np.arange(SIZE[1]) < 200)[None, :]] = rgb(COLOUR_REFERENCES["black"])
    axes = {a["axis"]: a for a in lesion_criteria(image, mask).asymmetry.numbers["axes"]}
    assert axes["minor"]["asymmetric_in_colour"] and not axes["minor"]["asymmetric_in_shape"]  # left half ≠ right half
    assert not axes["major"]["asymmetric"]  # top and bottom halves alike


def test_each_colour_is_counted_once_it_covers_five_percent():
    mask = ellipse(angle=0)
    image = painted(mask, "dark brown")
    columns = np.arange(SIZE[1])[None, :]
    image[mask & (columns < 150)] = rgb(COLOUR_REFERENCES["blue-grey"])
    image[mask & (columns > 280)] = rgb(COLOUR_REFERENCES["black"])
    image[mask & (columns > 315)] = rgb(COLOUR_REFERENCES["white"])  # a sliver under 5 % of the lesion
    colours = lesion_criteria(image, mask).colours
    assert colours.numbers["colours"] == ["dark brown", "blue-grey", "black"] and colours.score == 3
    assert 0 < colours.numbers["shares"]["white"] < criteria.MIN_COLOUR_SHARE


def test_a_colour_cast_is_undone_by_the_skin_white_balance():
    mask = ellipse()
    image = painted(mask, "light brown")
    cast = np.clip(image.astype(np.float32) * (1.15, 0.9, 1.1), 0, 255).astype(np.uint8)  # a magenta cast
    assert lesion_criteria(cast, mask).colours.numbers["colours"] == ["light brown"]


def test_the_scores_do_not_depend_on_the_image_resolution():
    mask = ellipse()
    image = painted(mask, "dark brown")
    image[mask & (np.arange(SIZE[1]) < 170)[None, :]] = rgb(COLOUR_REFERENCES["blue-grey"])
    big_image = cv2.resize(image, (1600, 1200), interpolation=cv2.INTER_NEAREST)
    big_mask = cv2.resize(mask.astype(np.uint8), (1600, 1200), interpolation=cv2.INTER_NEAREST) > 0
    small, big = lesion_criteria(image, mask), lesion_criteria(big_image, big_mask)
    assert [c.score for c in small.criteria] == [c.score for c in big.criteria]


def test_the_result_carries_definitions_source_and_says_d_is_not_computed():
    mask = ellipse()
    result = lesion_criteria(painted(mask, "dark brown"), mask).to_dict()
    json.dumps(result)  # JSON-ready
    assert "Stolz" in result["source"] and "1994" in result["source"]
    assert "D not computed" in result["partial_label"] and "not computed" in result["not_computed"]
    for key, (low, high) in {"asymmetry": (0, 2), "border": (0, 8), "colours": (1, 6)}.items():
        assert (result[key]["low"], result[key]["high"]) == (low, high) and len(result[key]["definition"]) > 100


def test_measurements_and_criteria_share_one_definition():
    mask = ellipse()
    image = painted(mask, "dark brown")
    image[mask & (np.arange(SIZE[1]) < 170)[None, :]] = rgb(COLOUR_REFERENCES["blue-grey"])
    measured, abcd = measure_lesion(image, mask), lesion_criteria(image, mask)
    assert measured.colours == abcd.colours.numbers["colours"]
    axes = abcd.asymmetry.numbers["axes"]
    assert (round(measured.asymmetry_major_axis, 4), round(measured.asymmetry_minor_axis, 4)) == (
        axes[0]["shape_non_overlap"], axes[1]["shape_non_overlap"])


def test_no_lesion_gives_none_and_a_mismatched_mask_is_refused():
    assert lesion_criteria(canvas(), np.zeros(SIZE, bool)) is None
    with pytest.raises(ValueError, match="differs from image shape"):
        lesion_criteria(canvas(), np.zeros((10, 10), bool))


def test_real_ph2_images_score_in_plausible_ranges(real_images):
    table = pd.read_csv(real_images / "labels.csv").iloc[::14]  # 10 images, nevi and melanomas
    results = []
    for image_id in table["image"]:
        image, mask = load_image_and_mask(real_images / "images" / f"{image_id}.jpg",
                                          real_images / "masks" / f"{image_id}_segmentation.png")
        results.append(lesion_criteria(np.asarray(image), mask))
    for result in results:
        assert 0 <= result.asymmetry.score <= 2 and 0 <= result.border.score <= 8 and 1 <= result.colours.score <= 6
        assert result.colours.numbers["shares"]["unassigned"] < 0.2  # the references cover real lesion colours
        assert result.colours.numbers["skin_lab"] is not None  # PH2 shows skin around each lesion
        assert set(result.colours.numbers["colours"]) <= {"light brown", "dark brown", "black", "blue-grey", "white", "red"}
    colour_counts = [r.colours.score for r in results]
    assert 1.2 <= np.mean(colour_counts) <= 4 and max(colour_counts) >= 2  # pigmented lesions: browns, often more
    assert sum(r.border.score for r in results) > 0  # some borders are abrupt
