"""The least image side: the study's rule on constructed numbers, and the shipped model refusing a thumbnail."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermfuse import DermFuse, create_model
from dermfuse.cli import main
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from dermfuse.ui.examples import EXAMPLES
from experiments.report_sections import resolution_verdict
from experiments.resolution import TOLERANCE, least_side, shrunk, shrunk_mask

REAL = CHECKPOINTS / DEFAULT_MODEL
RESULTS = CHECKPOINTS.parent / "docs" / "results" / "resolution.json"


def _row(**under):
    """A row of the study's table: the full-size numbers less ``under``."""
    full = {"macro_auc": 0.93, "melanoma_auc": 0.88, "balanced_accuracy": 0.70, "dice_ham10000": 0.94,
            "dice_isic2018_task1": 0.90}
    return {name: value - under.get(name, 0.0) for name, value in full.items()}


def test_the_least_side_is_the_smallest_at_which_it_and_every_larger_side_stay_within_the_tolerance():
    table = {"full": _row(), "160": _row(balanced_accuracy=0.029), "128": _row(macro_auc=0.02), "112": _row(),
             "96": _row(dice_isic2018_task1=0.011)}
    assert least_side(table) == 160  # 112 is within the tolerance, but 128 above it is not
    table["128"] = _row(melanoma_auc=0.009)
    assert least_side(table) == 112
    assert least_side({"full": _row(), "160": _row(dice_ham10000=0.02)}) is None
    assert set(TOLERANCE) == set(_row())


def test_the_report_says_whether_the_least_side_was_stored():
    assert "stored as the model's `min_image_side`" in resolution_verdict({"least_side": 112, "stored": True})
    assert "not stored (`--store=false`)" in resolution_verdict({"least_side": 112, "stored": False})
    assert "nothing was stored" in resolution_verdict({"least_side": None, "stored": False})


def test_shrinking_keeps_the_aspect_and_the_mask_follows_the_image():
    image = Image.new("RGB", (256, 192))
    assert shrunk(image, 96).size == (128, 96) and shrunk(image, None) is image and shrunk(image, 192) is image
    mask = np.zeros((192, 256), dtype=bool)
    mask[48:144, 64:192] = True  # a lesion half the frame's width and height
    small = shrunk_mask(mask, (128, 96))
    assert small.shape == (96, 128) and small.sum() == 64 * 48 and small[24:72, 32:96].all()


def test_a_model_states_its_least_side_as_a_whole_number_of_pixels():
    model = create_model("tiny")
    assert model.min_image_side == 0  # a model that was not measured takes any size
    model.update_config(min_image_side=112)
    assert model.config["min_image_side"] == 112
    for bad in (-1, 1.5, "112", True):
        with pytest.raises(ValueError, match="min_image_side"):
            model.update_config(min_image_side=bad)


@pytest.mark.skipif(not (REAL / "config.json").is_file(), reason=f"{REAL} is not in this copy")
def test_the_shipped_model_refuses_a_thumbnail_of_an_image_it_judges(tmp_path, capsys):
    """Its least side is the study's; an example shrunk under it is not assessable, and says why."""
    side = DermFuse.from_pretrained(str(REAL)).min_image_side
    assert side == json.loads(RESULTS.read_text())["least_side"] and side > 0
    original = Image.open(EXAMPLES / "ISIC_0000049.jpg").convert("RGB")
    shrunk(original, side).save(tmp_path / "at_least.png")
    shrunk(original, side - 1).save(tmp_path / "thumbnail.png")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path), "--model", str(REAL), "--out", str(out)]) == 0
    rows = pd.read_csv(out / "predictions.csv").set_index("image")
    assert rows.loc["at_least", "assessable"] and not rows.loc["thumbnail", "assessable"]
    width, height = Image.open(tmp_path / "thumbnail.png").size
    assert rows.loc["thumbnail", "reasons"].startswith(f"The image is too small to judge: {width}×{height} pixels, "
                                                       f"and this model needs at least {side} px on its shorter side")
    assert "thumbnail: NOT ASSESSABLE" in capsys.readouterr().out
