"""The teaching view's orientation demonstration: the example turned or mirrored before it is diagnosed, the page
saying so, and the same turned picture every time."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from dermfuse.data import load_image
from dermfuse.data.transforms import ORIENTATIONS, oriented
from dermfuse.ui import callbacks
from dermfuse.ui.examples import real_examples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def catalog(shipped_catalog):
    return shipped_catalog


def test_each_orientation_turns_back_to_the_image_as_it_is():
    image = np.arange(2 * 3 * 3).reshape(2, 3, 3).astype(np.uint8)  # not square: a turn swaps height and width
    for name, (_, back) in ORIENTATIONS.items():
        assert np.array_equal(back(oriented(image, name)), image), name
    assert oriented(image, "quarter turn left").shape == (3, 2, 3)
    with pytest.raises(ValueError, match="unknown orientation 'upside down': expected one of as it is, quarter turn left"):
        oriented(image, "upside down")


def test_a_turned_image_is_diagnosed_as_turned_and_the_page_says_so(catalog):
    example = real_examples()[0]
    as_it_is = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, True, True, False)
    turned = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, True, True, False,
                                orientation="quarter turn left")
    original = np.asarray(load_image(example.path))
    assert np.array_equal(turned[9].diagnosis.image, np.rot90(original))  # what was diagnosed and is shown
    assert turned[9].diagnosis.mask.shape == original.shape[1::-1]  # (W, H): the turned frame's own mask
    assert "Teaching view: the image was given a quarter turn left before it was diagnosed" in turned[5]
    assert "Teaching view" not in as_it_is[5]
    assert turned[7]["probabilities"] != as_it_is[7]["probabilities"]  # the scores it shows are the turned image's
    mirrored = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, True, True, False,
                                  orientation="mirrored left-right")
    assert "the image was mirrored left-right before" in mirrored[5]
    with pytest.raises(gr.Error, match="unknown orientation 'sideways'"):
        callbacks.diagnose(catalog, example.path, None, "unknown", "unknown", None, True, True, False, orientation="sideways")
