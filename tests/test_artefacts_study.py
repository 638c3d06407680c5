"""The study of air bubbles, ink and rulers in the image (``experiments/artefacts.py``): its measures on constructed
results, its section of ``docs/RESULTS.md``, and the committed ``docs/results/artefacts.json`` the README quotes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dermfuse.data.artefacts import KINDS
from dermfuse.sources import CHECKPOINTS
from experiments.artefacts import heat_on, mask_dice
from experiments.report_sections import artefacts_section

ROOT = CHECKPOINTS.parent
RESULTS = ROOT / "docs" / "results" / "artefacts.json"


def test_the_heat_on_an_artefact_is_the_share_of_each_maps_mass_on_its_pixels():
    footprint = np.zeros((4, 4), bool)
    footprint[0, :2] = True  # two of the sixteen pixels
    on = np.zeros((4, 4))
    on[0, 0], on[3, 3] = 3.0, 1.0  # three quarters of the mass on the artefact
    uniform = np.ones((4, 4))
    results = [SimpleNamespace(heatmaps={"image": on, "lesion": uniform}), SimpleNamespace(heatmaps={"image": on}),
               SimpleNamespace(heatmaps=None)]
    shares = heat_on(results, [footprint] * 3)
    assert shares["image"] == pytest.approx(0.75) and shares["lesion"] == pytest.approx(2 / 16)
    assert heat_on([SimpleNamespace(heatmaps=None)], [footprint]) == {"image": None, "lesion": None}


def test_the_mask_dice_is_the_median_over_images_against_the_expert_masks():
    expert = np.zeros((4, 4), bool)
    expert[:2] = True  # eight pixels
    half = np.zeros((4, 4), bool)
    half[0] = True  # four of them: Dice 2·4 / (4 + 8)
    results = [SimpleNamespace(mask=expert), SimpleNamespace(mask=half), SimpleNamespace(mask=half)]
    assert mask_dice(results, [expert] * 3) == pytest.approx(8 / 12)


def _report() -> dict:
    row = {"balanced_accuracy": 0.7, "macro_auc": 0.93, "melanoma_auc": 0.88, "ece": 0.05, "flagged": 0.02, "mask_dice": 0.95}
    moved = {"median_change": 0.03, "top_class_changed": 0.12, "artefact_area": 0.015}
    maps = {"with_artefact": {"image": 0.02, "lesion": 0.01}, "as_it_is_same_pixels": {"image": 0.01, "lesion": None},
            "artefact_area": 0.014}
    return {"model": "m", "path": "fast", "validation_images": 1500, "templates": "Katsch et al.",
            "names": {"ruler": "ruler"}, "conditions": {"as it is": row, "ruler": {**row, **moved}},
            "heatmaps": {"images": 100, "kinds": {"ruler": maps}}, "minutes": 5.0, "command": "python -m experiments.artefacts"}


def test_the_section_tables_each_kind_against_the_image_as_it_is():
    text = artefacts_section(_report(), Path("docs/results/artefacts.json"))
    assert "| as it is | 0.700 | 0.930 | 0.880 | 0.050 | 2.0 % | — | — | 0.950 | — |" in text
    assert "| ruler | 0.700 | 0.930 | 0.880 | 0.050 | 2.0 % | 0.030 | 12.0 % | 0.950 | 1.5 % |" in text
    assert "| ruler | 1.4 % | 0.020 | 0.010 | 0.010 | — |" in text
    assert "python -m experiments.artefacts" in artefacts_section(None, Path("docs/results/artefacts.json"))


def test_the_committed_study_is_of_the_shipped_model_with_every_kind_and_the_readme_quotes_it():
    report = json.loads(RESULTS.read_text())
    assert report["command"] == "python -m experiments.artefacts" and report["validation_images"] == 1500
    assert list(report["conditions"]) == ["as it is", *KINDS] and list(report["heatmaps"]["kinds"]) == list(KINDS)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())  # lines joined
    for kind in KINDS:
        row = report["conditions"][kind]
        said = (f"{report['names'][kind]}: the top class changed on {100 * row['top_class_changed']:.1f} %, balanced "
                f"accuracy {row['balanced_accuracy']:.3f}")
        assert said in readme, said
    ph2 = report["ph2"]["rows"]
    assert ph2["as it is"]["melanoma_auc"] == pytest.approx(0.815, abs=5e-4) and report["ph2"]["images"] == 140
    assert (f"the top class changed on {100 * ph2['bubble']['top_class_changed']:.1f} % (bubbles), "
            f"{100 * ph2['marking']['top_class_changed']:.1f} % (ink) and {100 * ph2['ruler']['top_class_changed']:.1f} % "
            f"(ruler)") in readme


def test_the_card_names_the_kinds_over_the_limit_with_the_committed_numbers():
    from publish.card import _limitations

    report = json.loads(RESULTS.read_text())["conditions"]
    item = next(line for line in _limitations(False, ham10000=True).splitlines() if line.startswith("- A ruler"))
    assert (f"a ruler changed the top class on {100 * report['ruler']['top_class_changed']:.1f} % of them and an ink "
            f"marking on {100 * report['marking']['top_class_changed']:.1f} %") in item
    assert (f"from {report['as it is']['balanced_accuracy']:.3f} to {report['ruler']['balanced_accuracy']:.3f} and "
            f"{report['marking']['balanced_accuracy']:.3f}") in item
    assert item in (CHECKPOINTS / "dermfuse-small-ham10000" / "README.md").read_text(encoding="utf-8")
