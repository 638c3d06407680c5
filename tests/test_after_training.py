"""The one command ends by measuring every value a model stores after training, in the order they depend on each other."""

from __future__ import annotations

import json
from pathlib import Path

from dermfuse.models.dermfuse import MUTABLE_CONFIG
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from experiments import after_training
from experiments.ham10000 import HAM10000Config, results_folder


def test_each_study_runs_on_the_exported_model_in_order_and_the_gate_is_measured_last(monkeypatch, tmp_path):
    calls = []
    studies = tuple((name, settings, lambda config, name=name: calls.append((name, config)))
                    for name, settings, _ in after_training.STUDIES)
    monkeypatch.setattr(after_training, "STUDIES", studies)
    monkeypatch.setattr(after_training, "run_gate", lambda config: calls.append(("gate again", config)))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "splits.csv").write_text("image_id,split\n")  # the settings check that the model has its split
    after_training.measure_after_training(tmp_path / "model", tmp_path / "data", tmp_path / "results")
    assert [name for name, _ in calls] == ["gate", "skin_tone", "operating_points", "resolution", "focus", "bare_skin",
                                           "dark_frame", "gate again"]
    for name, config in calls:
        assert (config.model, config.data) == (str(tmp_path / "model"), str(tmp_path / "data")), name
        assert config.out == str(tmp_path / "results" / f"{name.split()[0]}.json"), name
    assert calls[0][1].fit and not calls[-1][1].fit  # fitted first, measured with every rule at the end


def test_every_value_the_shipped_model_stores_after_training_has_its_study():
    stored = json.loads((CHECKPOINTS / DEFAULT_MODEL / "config.json").read_text())
    measured = {"gate": "gate", "skin_tone": "skin_tone", "operating_points": "operating_points",
                "min_image_side": "resolution", "min_sharpness": "focus", "min_lesion_contrast": "bare_skin"}
    studies = {name for name, _, _ in after_training.STUDIES}
    for key in measured:
        assert key in MUTABLE_CONFIG and key in stored and measured[key] in studies, key


def test_the_shipped_models_numbers_go_to_the_docs_and_anyone_elses_to_the_work_folder(monkeypatch):
    monkeypatch.chdir(CHECKPOINTS.parent)
    assert results_folder(HAM10000Config()) == CHECKPOINTS.parent / "docs" / "results"
    assert results_folder(HAM10000Config(out="elsewhere/model", work="runs/mine")) == Path("runs/mine/results")
