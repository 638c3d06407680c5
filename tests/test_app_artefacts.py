"""The teaching view's artefact demonstration: a real artefact pasted into the example, the scores and heat shown for it."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from dermfuse.data import load_image
from dermfuse.data.artefacts import TEMPLATES_ENV, templates_folder
from dermfuse.ui import callbacks
from dermfuse.ui.examples import real_examples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def catalog(shipped_catalog):
    return shipped_catalog


def test_a_pasted_artefact_changes_only_its_footprint_and_the_page_says_so(catalog):
    if not callbacks.artefacts_available():
        pytest.skip(f"the artefact templates are not at {templates_folder()} (they live beside the repository)")
    example = real_examples()[0]
    clean = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, True, True, False)
    inked = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, True, True, False,
                               artefact="ink marking")
    original, shown = np.asarray(load_image(example.path)), inked[9].diagnosis.image
    changed = np.abs(shown.astype(int) - original.astype(int)).max(axis=-1) > 0
    assert 0 < changed.mean() < 0.3  # some ink, not a repainted picture
    assert "Teaching view: a real ink marking was pasted" in inked[5] and "Katsch" in inked[5]
    assert "pasted" not in clean[5]
    assert inked[7]["probabilities"] != clean[7]["probabilities"]  # the scores it shows are the inked image's
    again = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, True, True, False,
                               artefact="ink marking")
    assert np.array_equal(again[9].diagnosis.image, shown)  # the same artefact every time: a fair comparison


def test_without_the_templates_the_choice_explains_itself(catalog, monkeypatch, tmp_path):
    monkeypatch.setenv(TEMPLATES_ENV, str(tmp_path))
    assert not callbacks.artefacts_available()
    example = real_examples()[0]
    with pytest.raises(gr.Error, match="artefact templates are not installed"):
        callbacks.diagnose(catalog, example.path, None, "unknown", "unknown", None, True, True, False, artefact="ruler")
    with pytest.raises(gr.Error, match="unknown artefact 'glitter'"):
        callbacks.diagnose(catalog, example.path, None, "unknown", "unknown", None, True, True, False, artefact="glitter")
