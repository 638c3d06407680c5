"""Bare skin: the squares the study cuts, a model's stored least lesion contrast, and the shipped model refusing a
square of bare skin from an image it judges."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import cli_predictions
from dermfuse import DermFuse
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from dermfuse.ui.examples import EXAMPLES
from experiments import bare_skin
from experiments.bare_skin import MARGIN, bare_square

REAL = CHECKPOINTS / DEFAULT_MODEL
RESULTS = CHECKPOINTS.parent / "docs" / "results" / "bare_skin.json"


def test_the_bare_square_is_the_largest_that_keeps_clear_of_the_lesion():
    mask = np.zeros((192, 256), dtype=bool)
    mask[60:130, 150:220] = True  # a lesion right of centre
    x, y, side = bare_square(mask, 64)
    assert side >= 140 and x + side <= 150 - MARGIN  # the left part of the frame, clear of the lesion's grown edge
    grown = np.zeros_like(mask)
    grown[60 - MARGIN:130 + MARGIN, 150 - MARGIN:220 + MARGIN] = True
    assert not grown[y:y + side, x:x + side].any()
    assert bare_square(mask, 200) is None  # no square that large is free
    centre = np.zeros((192, 256), dtype=bool)
    centre[40:150, 60:200] = True
    assert bare_square(centre, 112) is None  # a large central lesion leaves no 112-px square


def test_the_images_turned_away_are_counted_per_diagnosis_with_how_many_the_model_had_right(monkeypatch):
    monkeypatch.setattr(bare_skin, "under_least", lambda result, model, least: result.caught)
    results = [SimpleNamespace(caught=True, top_class="df", assessable=True),
               SimpleNamespace(caught=False, top_class="nv", assessable=True),
               SimpleNamespace(caught=True, top_class="nv", assessable=False),
               SimpleNamespace(caught=True, top_class="bcc", assessable=True)]
    numbers = bare_skin.image_numbers(results, pd.Series(["df", "nv", "akiec", np.nan]), None, 3.0)
    assert numbers["turned_away_by_class"] == {"akiec": [1, 1], "df": [1, 1], "nv": [0, 1]}  # the unlabelled one left out
    assert numbers["turned_away_top_class_right"] == 1  # the dermatofibroma
    assert (numbers["assessable_before"], numbers["under_least_contrast"], numbers["assessable_after"]) == (0.75, 0.75, 0.25)


@pytest.mark.skipif(not RESULTS.is_file() or not (REAL / "config.json").is_file(), reason=f"{RESULTS} or {REAL} is not in this copy")
def test_the_shipped_model_stores_the_least_contrast_the_study_measured():
    report = json.loads(RESULTS.read_text())
    least = DermFuse.from_pretrained(str(REAL)).min_lesion_contrast
    assert report["stored"] == (least > 0)
    if report["stored"]:
        assert least == pytest.approx(report["least_contrast"])
        assert report["validation"]["images_turned_away"] <= report["limits"]["validation"]


@pytest.mark.skipif(not (REAL / "config.json").is_file(), reason=f"{REAL} is not in this copy")
def test_the_shipped_model_refuses_a_square_of_bare_skin_cut_from_an_image_it_judges(tmp_path):
    model = DermFuse.from_pretrained(str(REAL))
    assert model.min_lesion_contrast > 0  # the committed bare-skin study stored it
    original = Image.open(EXAMPLES / "ISIC_0000025.jpg").convert("RGB")  # a nevus; its lower right corner is bare skin
    rows = cli_predictions({"original": original, "bare": original.crop((432, 272, 594, 434))}, tmp_path, REAL)
    assert rows.loc["original", "assessable"] and not rows.loc["bare", "assessable"]
    assert rows.loc["bare", "reasons"].startswith("No lesion stands out from the skin: ")
    assert f"under the {model.min_lesion_contrast:.1f} this model needs" in rows.loc["bare", "reasons"]
    model.min_lesion_contrast = 0.0  # without the rule the same square gets a diagnosis
    assert DermFusePipeline(model)(tmp_path / "bare.png", explain=False).assessable


def ham10000_counts(report: dict, label: str) -> tuple[int, int]:
    """(turned away, images) of one diagnosis over the HAM10000 validation and test splits."""
    rows = [report["images"][f"HAM10000 {split}"]["turned_away_by_class"][label] for split in ("validation", "test")]
    return sum(turned for turned, _ in rows), sum(seen for _, seen in rows)


@pytest.mark.skipif(not RESULTS.is_file(), reason=f"{RESULTS} is not in this copy")
def test_the_readme_quotes_the_committed_study():
    report = json.loads(RESULTS.read_text())
    readme = " ".join((CHECKPOINTS.parent / "README.md").read_text(encoding="utf-8").split())
    validation, squares = report["validation"], report["squares"]
    test = [squares[name] for name in ("HAM10000 test", "ISIC 2018 test")]
    labelled = sum(counts[0] for row in report["images"].values() for counts in row["turned_away_by_class"].values())
    right = sum(row["turned_away_top_class_right"] for row in report["images"].values())
    akiec, df = ham10000_counts(report, "akiec"), ham10000_counts(report, "df")
    for said in (f"the 0.5 % quantile of the training split, ΔE\\*ab {report['least_contrast']:.2f}",
                 f"It turned away {100 * validation['images_turned_away']:.1f} % of validation images and "
                 f"{validation['squares_caught']} of the {validation['squares_diagnosed_before']} squares",
                 f"{sum(s['caught'] for s in test)} of the {sum(s['diagnosed_before'] for s in test)} test squares and "
                 f"{squares['PH2']['caught']} of PH2's {squares['PH2']['diagnosed_before']}",
                 f"of the labelled real images it turned away {labelled}, among them {akiec[0]} of the {akiec[1]} actinic "
                 f"keratoses and {df[0]} of the {df[1]} dermatofibromas of the HAM10000 validation and test splits, and no "
                 f"melanoma; the model's top class had been right on {right} of the {labelled}."):
        assert said in readme, said
    assert all(row["turned_away_by_class"].get("mel", [0])[0] == 0 for row in report["images"].values())  # no melanoma
