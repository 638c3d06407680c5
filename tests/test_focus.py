"""The least sharpness: what the study does to images, a model's stored value, and the shipped model refusing a
blurred image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import cli_predictions
from dermfuse import DermFuse
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from dermfuse.ui.examples import EXAMPLES
from experiments.focus import BLURS, conditions, image_sharpness

REAL = CHECKPOINTS / DEFAULT_MODEL
RESULTS = CHECKPOINTS.parent / "docs" / "results" / "focus.json"


def test_the_conditions_soften_an_image_more_as_they_go_and_keep_its_size(tmp_path):
    original = Image.open(EXAMPLES / "ISIC_0000049.jpg").convert("RGB")
    made = conditions()
    assert list(made)[:2] == ["as it is", f"blur σ={BLURS[0]}"] and "blur σ=2" in made  # the rule reads σ = 2
    values = []
    for name, change in made.items():
        changed = change(original)
        assert changed.size == original.size, name
        changed.save(tmp_path / "image.png")
        values.append(image_sharpness(tmp_path / "image.png"))
    blurred = values[:1 + len(BLURS)]
    assert blurred == sorted(blurred, reverse=True) and values[-1] < values[0]


@pytest.mark.skipif(not (REAL / "config.json").is_file(), reason=f"{REAL} is not in this copy")
def test_the_shipped_model_refuses_a_blurred_copy_of_an_image_it_judges(tmp_path):
    report = json.loads(RESULTS.read_text())
    least = DermFuse.from_pretrained(str(REAL)).min_sharpness
    assert report["stored"] and least == pytest.approx(report["least_sharpness"]) and least > 0
    original = Image.open(EXAMPLES / "ISIC_0000049.jpg").convert("RGB")
    blurred = conditions()["blur σ=3"](original.resize((256, 192), Image.LANCZOS))
    rows = cli_predictions({"original": original, "blurred": blurred}, tmp_path, REAL)
    assert rows.loc["original", "assessable"] and not rows.loc["blurred", "assessable"]
    assert rows.loc["blurred", "reasons"].startswith("The image is out of focus (or washed out): its sharpness is ")
    assert f"under the {least:.2f} this model needs" in rows.loc["blurred", "reasons"]
    assert np.isnan(rows.loc["blurred", "top_probability"])  # no scores shown
