"""The shipped demo checkpoint: what its card promises, and `dermfuse evaluate` reproducing the card's numbers."""

from __future__ import annotations

import json

import pytest

from dermfuse import DermFuse
from dermfuse.cli import main
from dermfuse.data.phantom import generate_dataset
from dermfuse.sources import CHECKPOINTS, DEMO_MODEL
from experiments.demo import DemoConfig

DEMO = CHECKPOINTS / DEMO_MODEL


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((DEMO / "metrics.json").read_text())


def test_demo_checkpoint_is_small_loadable_and_says_it_is_a_phantom_model():
    assert (DEMO / "model.safetensors").stat().st_size <= 20 * 2**20
    model = DermFuse.from_pretrained(str(DEMO))
    assert model.name == DEMO_MODEL and model.dataset.startswith("phantom (synthetic)")
    assert model.temperature != 1.0 and model.ood is not None
    card = (DEMO / "README.md").read_text()
    assert "Trained on synthetic phantom images" in card and "not for diagnosis" in card and "Not a medical device" in card


def test_card_reports_the_held_out_phantom_numbers_and_they_meet_the_targets(metrics):
    card = (DEMO / "README.md").read_text()
    segmenter, test, calibration = metrics["segmenter"]["test"], metrics["test"], metrics["calibration"]
    for value in (segmenter["dice"], segmenter["thresholded_jaccard"], test["balanced_accuracy"], test["macro_auc"],
                  calibration["test_ece_before"], calibration["test_ece_after"]):  # fmt: skip
        assert f"{value:.4f}" in card
    assert segmenter["dice"] >= 0.85 and test["balanced_accuracy"] >= 0.80
    assert "python -m train demo" in card and "Wall time" in card


@pytest.mark.slow
def test_dermfuse_evaluate_reproduces_the_cards_pipeline_numbers(metrics, tmp_path, capsys):
    card, settings = metrics["pipeline_test"], DemoConfig()  # the demo's phantom set: its default settings
    assert (f"--n {settings.phantoms} --size {settings.phantom_size} --seed {settings.seed} "
            f"--difficulty {settings.difficulty:g}") in card["command"]  # fmt: skip
    root = tmp_path / "phantoms"
    generate_dataset(root, settings.phantoms, seed=settings.seed, size=settings.phantom_size,
                     difficulty=settings.difficulty, workers=2, progress=False)  # fmt: skip
    out = tmp_path / "evaluation"
    assert main(["evaluate", str(root), "--model", str(DEMO), "--manifest", str(DEMO / "splits.csv"), "--split", "test",
                 "--out", str(out)]) == 0  # fmt: skip
    again = json.loads((out / "metrics.json").read_text())
    assert again["images"] == card["images"]
    for part, keys in (("segmentation", ("dice", "iou", "thresholded_jaccard")),
                       ("classification", ("accuracy", "balanced_accuracy", "macro_auc", "ece"))):  # fmt: skip
        for key in keys:
            assert again[part][key] == pytest.approx(card[part][key], abs=2e-3), (part, key)
