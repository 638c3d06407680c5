"""Pictures of a diagnosis: the lesion-stream map over its box, colour bars, plain titles, the CLI's overlay figure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dermfuse import create_model, render
from dermfuse.data.phantom import generate_phantom
from dermfuse.pipeline import DermFusePipeline
from dermfuse.ui import views

from conftest import colour_bars_in


@pytest.fixture(scope="module")
def diagnosis():
    torch.manual_seed(0)
    pipeline = DermFusePipeline(create_model("tiny"), fast=False)
    phantom = generate_phantom("mel", seed=2, size=240)
    image = np.ascontiguousarray(phantom.image[:, :200])  # not square
    result = pipeline(image, 50, "male", "back", mask=np.ascontiguousarray(phantom.mask[:, :200]))
    result.image_id = "case-7"
    return result


def test_the_lesion_map_is_drawn_only_over_the_box_its_image_came_from():
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    heat = np.ones((60, 80), np.float32)
    box = (50, -10, 100, 40)  # reaches outside the frame at the top and on the right
    drawn = render.heat_overlay(image, heat, box=box)
    outside = drawn[45:, :40].astype(int)  # far from the box and its outline
    assert (outside[..., 0] == outside[..., 1]).all() and (outside[..., 1] == outside[..., 2]).all()  # grey
    assert not np.array_equal(drawn[20:35, 55:75], image[20:35, 55:75])  # coloured inside
    everywhere = render.heat_overlay(image, heat)
    assert (everywhere[45:, :40] != outside).any()  # without a box the whole frame is coloured


def test_the_app_shows_every_heatmap_with_its_colour_bar_and_the_lesion_map_at_its_box(diagnosis):
    assert diagnosis.lesion_box is not None
    shown = views.pictures(diagnosis.image, diagnosis)
    for key in ("heat_image", "heat_lesion"):
        assert colour_bars_in(shown[key]) == 1, key
        assert shown[key].shape[1] == diagnosis.image.shape[1] and shown[key].shape[0] > diagnosis.image.shape[0]
    assert colour_bars_in(shown["outline"]) == 0
    x0, y0, x1, y1 = diagnosis.lesion_box
    lesion_map = shown["heat_lesion"][: diagnosis.image.shape[0]].astype(int)
    far = np.ones(diagnosis.image.shape[:2], bool)
    far[max(y0 - 4, 0):y1 + 4, max(x0 - 4, 0):x1 + 4] = False
    assert far.any() and (lesion_map[far][:, 0] == lesion_map[far][:, 2]).all()  # grey where the lesion image is not



@pytest.mark.parametrize("width", [120, 192, 256, 768])
def test_the_colour_bar_strip_shows_all_its_words(width):
    strip = render.colour_bar_strip(width).astype(int)  # its words wrap to two lines at every one of these widths
    ink = (strip.min(axis=2) < 160).any(axis=1)  # rows with dark pixels
    assert strip.shape[1] == width and ink[-3:].sum() == 0  # the last line ends above the bottom edge, not cut off
    below_bar = np.flatnonzero(ink)[-1] - np.flatnonzero(ink)[0]
    assert below_bar > 0.4 * strip.shape[0]  # and the words are there
def test_shrinking_for_the_screen_scales_the_lesion_box_with_the_maps(diagnosis):
    big = np.ascontiguousarray(np.repeat(np.repeat(diagnosis.image, 4, 0), 4, 1))
    image, small = views.shrink(big, diagnosis.__class__(**{**diagnosis.__dict__, "lesion_box": [40, 20, 400, 380]}),
                                max_side=480)
    assert small.lesion_box == [20, 10, 200, 190]  # 960 × 800 → 480 × 400: half


def test_the_cli_overlay_figure_has_titles_scores_and_a_colour_bar_per_heatmap(diagnosis):
    figure = render.overlay_sheet(diagnosis)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles[0] == render.TITLES["outline"]
    assert titles[1].startswith(render.TITLES["heat_image"] + "\nGrad-CAM")
    assert titles[2].startswith(render.TITLES["heat_lesion"] + "\nGrad-CAM")
    assert all("% of the heat on the lesion" in title for title in titles[1:])
    bars = [axis for axis in figure.axes if render.HEAT_SCALE.split()[0] in axis.get_xlabel()]
    assert len(bars) == 2 and all(axis.get_xlim() == (0.0, 1.0) for axis in bars)
    words = " ".join(text.get_text() for text in figure.texts)
    top = max(diagnosis.scores().items(), key=lambda item: item[1])
    assert "case-7" in words and f"({top[0]}) {render.percent(top[1])}" in words
    assert colour_bars_in(render.as_pixels(figure)) == 2


def test_the_overlay_figure_carries_its_warnings_and_the_model_that_made_it(diagnosis):
    """Shared alone, the picture still says which model made it, what that model learned from, and what to beware of."""
    figure = render.overlay_sheet(replace(diagnosis, warnings=["First warning.", "Second warning."]))
    words = " ".join(text.get_text() for text in figure.texts).replace("\n", " ")
    assert "Warning: First warning." in words and "Warning: Second warning." in words
    info = diagnosis.model
    assert f"Model: {info['name']}, revision {info['revision']}, trained on {info['dataset']}" in words
    assert render.DISCLAIMER in words
    plain = render.overlay_sheet(replace(diagnosis, warnings=[]))
    assert figure.get_figheight() > plain.get_figheight() >= 5  # the figure grows with its lines
    inches = lambda f: sorted(round(a.get_position().height * f.get_figheight(), 6) for a in f.axes)  # noqa: E731
    assert inches(figure) == inches(plain)  # and its pictures and colour bars keep their size
