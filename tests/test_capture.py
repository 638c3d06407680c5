"""The capture study: what it does to images and its report (the white balance it tries: test_colour_constancy.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermfuse.cli import main
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from dermfuse.ui.examples import EXAMPLES
from experiments.capture import CASTS, QUALITIES, cast, conditions, contrast, gamma
from experiments.report_sections import capture_section

REAL = CHECKPOINTS / DEFAULT_MODEL
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "capture.json"


@pytest.fixture(scope="module")
def lesion() -> Image.Image:
    """A real dermoscopy image (a CC0 example), shrunk to the study's 256-px scale."""
    return Image.open(EXAMPLES / "ISIC_0000049.jpg").convert("RGB").reduce(4)


def test_every_condition_keeps_the_size_and_changes_the_pixels(lesion):
    made = conditions()
    assert list(made)[0] == "as it is" and made["as it is"](lesion) is lesion
    assert {f"JPEG quality {q}" for q in QUALITIES} <= set(made) and {f"colour cast: {n}" for n in CASTS} <= set(made)
    for name, change in list(made.items())[1:]:
        changed = change(lesion)
        assert changed.size == lesion.size and changed.mode == "RGB", name
        assert np.abs(np.asarray(changed, np.int16) - np.asarray(lesion, np.int16)).mean() > 0.5, name


def test_a_cast_scales_each_channel_and_light_changes_keep_their_promises(lesion):
    pixels = np.asarray(lesion, np.float64)
    warmer = np.asarray(cast((1.15, 1.0, 0.85))(lesion), np.float64)
    assert warmer[..., 0].mean() > pixels[..., 0].mean() and warmer[..., 2].mean() < pixels[..., 2].mean()
    assert np.abs(warmer[..., 1] - pixels[..., 1]).max() == 0
    flatter = np.asarray(contrast(0.6)(lesion), np.float64)
    assert flatter.std() < pixels.std() and abs(flatter.mean() - pixels.mean()) < 1
    assert np.asarray(gamma(1.5)(lesion), np.float64).mean() < pixels.mean() < np.asarray(gamma(0.7)(lesion), np.float64).mean()


def test_the_section_reports_every_row():
    row = {"balanced_accuracy": 0.7, "macro_auc": 0.93, "melanoma_auc": 0.88, "ece": 0.05, "median_top_probability": 0.87,
           "flagged": 0.01}
    moved = {**row, "median_change": 0.05, "top_class_changed": 0.12}
    report = {"validation_images": 1500, "path": "fast", "command": "python -m experiments.capture", "minutes": 20.0,
              "conditions": {"as it is": row, "JPEG quality 10": moved},
              "ph2_full_size": {"images": 140, "melanomas": 28, "rows": {"as it is": {"melanoma_auc": 0.81},
                                                                         "JPEG quality 10": {"melanoma_auc": 0.73, "median_change": 0.4,
                                                                                             "top_class_changed": 0.55}}},
              "white_balance": {"reference_chromaticity": [0.4, 0.29, 0.31], "validation": {"as it is": moved},
                                "isic2018_task1_validation": {"images": 302, "melanomas": 60, "as it is": 0.69,
                                                              "white-balanced": 0.71}}}
    text = capture_section(report, Path("capture.json"))
    assert "| JPEG quality 10 | 0.700 | 0.930 | 0.880 | 0.050 | 0.870 | 1.0 % | 0.050 | 12.0 % |" in text
    assert "| JPEG quality 10 | 0.730 | 0.400 | 55.0 % |" in text and "0.690 as it is, 0.710 white-balanced" in text
    assert "Not measured yet" in capture_section(None, Path("capture.json"))


@pytest.mark.skipif(not RESULTS.is_file(), reason=f"{RESULTS} is not in this copy: run python -m experiments.capture")
def test_the_stored_study_covers_every_condition():
    report = json.loads(RESULTS.read_text())
    assert list(report["conditions"]) == list(conditions())
    assert set(report["white_balance"]["validation"]) == {"as it is", *(f"colour cast: {n}" for n in CASTS)}


@pytest.mark.skipif(not (REAL / "config.json").is_file(), reason=f"{REAL} is not in this copy")
def test_a_heavily_compressed_upload_is_diagnosed_with_a_caution_and_the_original_without(tmp_path):
    """Through the CLI with the shipped model: the file's quality reaches the result; a CC0 example at 300 px saved at
    quality 40 is cautioned, the same at 90 and the full-size original (quality 70 at 1022×767) are not."""
    original = EXAMPLES / "ISIC_0000049.jpg"
    small = Image.open(original).convert("RGB").resize((400, 300), Image.LANCZOS)
    small.save(tmp_path / "compressed.jpg", quality=40)
    small.save(tmp_path / "kept.jpg", quality=90)
    (tmp_path / "original.jpg").write_bytes(original.read_bytes())
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path), "--model", str(REAL), "--out", str(out)]) == 0
    rows = pd.read_csv(out / "predictions.csv", keep_default_na=False).set_index("image")
    assert rows["assessable"].all()  # a caution, not a refusal
    assert "strong compression (quality 40)" in rows.loc["compressed", "warnings"]
    assert "compression" not in rows.loc["kept", "warnings"] and "compression" not in rows.loc["original", "warnings"]
