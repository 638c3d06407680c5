"""The real-data experiment's own parts: fp16 storage of the weights and the run's bookkeeping."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dermfuse import DermFuse
from dermfuse.data.phantom import generate_phantom
from dermfuse.pipeline import Case, DermFusePipeline
from dermfuse.sources import CHECKPOINTS, DEMO_MODEL
import experiments.ham10000 as recipe
from experiments.ham10000 import fp16_exact, half_rounded, store_half, stored_bytes


def test_half_storage_loads_back_as_fp32_and_agrees(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(CHECKPOINTS / DEMO_MODEL, folder)
    store_half(folder)
    tensors = load_file(str(folder / "model.safetensors"))
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    half, full = DermFuse.from_pretrained(str(folder)), DermFuse.from_pretrained(str(CHECKPOINTS / DEMO_MODEL))
    assert all(p.dtype == torch.float32 for p in half.parameters())
    images = [generate_phantom(label, seed=3, size=160).image for label in ("mel", "nv", "bcc")]
    probabilities = [np.array([r.probabilities for r in DermFusePipeline(m, fast=False).predict([Case(i) for i in images])])
                     for m in (half, full)]
    assert np.abs(probabilities[0] - probabilities[1]).max() < 0.01
    assert (folder / "model.safetensors").stat().st_size < 0.6 * (CHECKPOINTS / DEMO_MODEL / "model.safetensors").stat().st_size


def test_mixed_storage_keeps_the_small_tensors_exact_and_rounds_the_large_ones():
    model = DermFuse.from_pretrained(str(CHECKPOINTS / DEMO_MODEL))
    weights = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    small = next(k for k, v in weights.items() if v.numel() < 64)
    large = max(weights, key=lambda k: weights[k].numel())
    rounded, mixed = half_rounded(model).state_dict(), half_rounded(model, kept_below=64).state_dict()
    assert torch.equal(rounded[small], weights[small].half().float())  # plain fp16 storage rounds every tensor
    assert torch.equal(mixed[small], weights[small])  # under the limit: fp32, untouched
    assert torch.equal(mixed[large], weights[large].half().float()) and not torch.equal(mixed[large], weights[large])
    fp32 = stored_bytes(model)
    assert fp32 == sum(v.numel() * v.element_size() for v in model.state_dict().values())
    integers = fp32 - sum(v.numel() * 4 for v in weights.values())
    assert stored_bytes(model, 0) == integers + sum(v.numel() * 2 for v in weights.values())  # every float in fp16
    assert stored_bytes(model, 0) < stored_bytes(model, 64) < fp32


def test_rounded_weights_are_fp16_exact_and_rounding_them_again_changes_nothing():
    model = DermFuse.from_pretrained(str(CHECKPOINTS / DEMO_MODEL))
    assert not fp16_exact(model)  # trained fp32 weights
    rounded = half_rounded(model)
    assert fp16_exact(rounded)
    again = half_rounded(rounded).state_dict()
    assert all(torch.equal(again[k], v) for k, v in rounded.state_dict().items())
    assert not fp16_exact(half_rounded(model, kept_below=64))  # mixed storage keeps small fp32 tensors


def test_the_card_says_the_weights_were_rounded_measured_again_and_by_how_much():
    from publish.card import _storage

    change = {"images": 300, "same_top_class": 0.99, "median_change": 0.003, "max_change": 0.261, "moved_over_0.05": 30,
              "moved_over_0.01": 145}
    text = _storage({"dtype": "float16", "rounding": {"images": 300, "paths": {"fast": change, "fp32": {**change, "max_change": 0.061}}}})
    assert text.startswith("Weights are stored in float16 and loaded as fp32.")
    assert "every number on this card is the rounded model's" in text and "first 300 test images" in text
    assert "fast path: largest change 0.261, 145 of 300 images over 0.01, the same top class on 99.0%" in text
    assert "fp32 path: largest change 0.061" in text
    assert _storage({"dtype": "float32"}) == "Weights are stored in float32.\n"


def test_the_card_says_how_the_weights_differ_from_a_fresh_run():
    from publish.card import _reproduce

    plain = _reproduce({"command": "python -m train ham10000", "wall_time": "5 minutes"})
    told = _reproduce({"command": "python -m train ham10000", "history": "the segmenter was resumed to 8 epochs."})
    assert "differ from a from-scratch run" not in plain
    assert "How these weights differ from a from-scratch run of the command: the segmenter was resumed to 8 epochs." in told


def test_other_clinics_numbers_come_from_the_labelled_images_and_the_ood_flags():
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    mel, nv, bkl = classes.index("mel"), classes.index("nv"), classes.index("bkl")
    labels = np.array([mel, mel, nv, nv, nv, bkl])
    calibrated = np.full((6, 7), 0.02)
    for row, (top, score) in enumerate([(mel, 0.7), (nv, 0.5), (nv, 0.8), (mel, 0.6), (nv, 0.9), (nv, 0.6)]):
        calibrated[row, top] = score  # melanoma scores: 0.7, 0.02 (its top is nevus), 0.02, 0.6, 0.02 on the pairs
    metrics = {"classification": {"accuracy": 0.5, "balanced_accuracy": 0.44, "ece": 0.1},
               "classification_without_metadata": {"balanced_accuracy": 0.4}}
    flagged = np.array([True, False, False, True, False, False])
    numbers = recipe.other_clinics(metrics, {"labels": labels, "calibrated": calibrated, "ood_flagged": flagged}, classes)
    assert numbers["images"] == 6 and numbers["diagnoses"] == {"bkl": 1, "mel": 2, "nv": 3}
    pair = numbers["melanoma_vs_nevus"]
    assert (pair["images"], pair["melanomas"]) == (5, 2)
    # melanomas score 0.7 and 0.02, nevi 0.02, 0.6, 0.02: 0.7 beats all three, 0.02 ties two (half each) of six pairs
    assert pair["auc"] == pytest.approx(4 / 6)
    assert numbers["ood_flagged"] == {"images": 2, "accuracy_flagged": 0.5, "accuracy_not_flagged": 0.5}
    assert "ood_flagged" not in recipe.other_clinics(metrics, {"labels": labels, "calibrated": calibrated}, classes)


def test_the_card_gives_the_other_clinics_numbers_and_says_what_the_ood_flags_showed():
    from publish.card import _limitations, _other_clinics

    other = {"images": 300, "diagnoses": {"bkl": 40, "mel": 60, "nv": 200}, "accuracy": 0.66, "balanced_accuracy": 0.5,
             "balanced_accuracy_without_metadata": 0.48, "ece": 0.12,
             "melanoma_vs_nevus": {"images": 260, "melanomas": 60, "auc": 0.64, "sensitivity_at_80_specificity": 0.4},
             "ood_flagged": {"images": 30, "accuracy_flagged": 0.8, "accuracy_not_flagged": 0.65}}
    text = _other_clinics(other, {"auc": 0.88})
    assert "300 images with an ISIC 2019 diagnosis: 40 bkl, 60 mel, 200 nv" in text and "AUC 0.6400" in text
    assert "HAM10000 test split: AUC 0.8800" in text
    assert "on 80 % of those and on 65 % of the others, so the warning did not pick out" in text
    worse = _other_clinics({**other, "ood_flagged": {"images": 30, "accuracy_flagged": 0.5, "accuracy_not_flagged": 0.65}}, {})
    assert "the flagged ones were judged worse" in worse and "did not pick out" not in worse
    none = _other_clinics({**other, "ood_flagged": {"images": 0, "accuracy_flagged": None, "accuracy_not_flagged": 0.6}}, {})
    assert "flagged none of them" in none
    assert "melanoma against nevus AUC 0.64: see Results" in _limitations(False, ham10000=True, other_clinics=other)
    assert "other clinics and devices." in _limitations(False, ham10000=True)


def test_the_shipped_card_tells_its_history():
    card = (CHECKPOINTS / "dermfuse-small-ham10000" / "README.md").read_text(encoding="utf-8")
    assert "How these weights differ from a from-scratch run" in card and "8-epoch segmenter" in card


def test_the_shipped_weights_are_the_measured_fp16_model_under_25_mb():
    folder = CHECKPOINTS / "dermfuse-small-ham10000"
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 25_000_000
    tensors = load_file(str(weights))
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    model = DermFuse.from_pretrained(str(folder))
    assert fp16_exact(model) and all(p.dtype == torch.float32 for p in model.parameters())  # loaded as fp32, unchanged
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "every number on this card is the rounded model's" in card
    assert "with the weights before their rounding to fp16" in card  # the training stage's own test table says so


def test_the_recipe_scores_and_ships_the_rounded_model_and_reports_what_rounding_moved(tmp_path):
    from dermfuse.data import read_dataset
    from dermfuse.evaluate import evaluate
    from experiments.ham10000 import HAM10000Config, shipped_model
    from train_support import make_phantoms

    rows = read_dataset(make_phantoms(tmp_path / "data", n=14))
    rows["source"], rows["split"] = "ham10000", "test"  # phantoms standing in for the HAM10000 test split
    config = HAM10000Config(ham10000=str(tmp_path / "data"), isic2018_task1="", ph2="", out=str(tmp_path / "out"),
                            progress=False, half_images=5)
    model = DermFuse.from_pretrained(str(CHECKPOINTS / DEMO_MODEL))
    shipped, results = shipped_model(model, rows, config)
    assert fp16_exact(shipped) and not fp16_exact(model)
    rounding = results["storage"]["rounding"]
    assert results["storage"]["dtype"] == "float16" and rounding["images"] == 5
    assert all(numbers["images"] == 5 for numbers in rounding["paths"].values()) and "fp32" in rounding["paths"]
    again, _ = evaluate(DermFusePipeline(half_rounded(model)), rows, progress=False)  # the numbers are the rounded model's
    assert results["pipeline_test"]["classification"] == again["classification"]
    _, fp32 = shipped_model(model, rows, HAM10000Config(**{**config.__dict__, "half": False}))
    assert fp32["storage"] == {"dtype": "float32"}


def test_bad_settings_name_the_problem(tmp_path):
    from experiments.ham10000 import HAM10000Config, rescore

    with pytest.raises(ValueError, match="half_images=0"):
        HAM10000Config(ham10000=str(tmp_path), isic2018_task1="", ph2="", half_images=0)
    HAM10000Config(ham10000=str(tmp_path), isic2018_task1="", ph2="", half=False, half_images=0)  # nothing to measure
    with pytest.raises(FileNotFoundError, match="no exported model there"):
        rescore(HAM10000Config(ham10000=str(tmp_path), isic2018_task1="", ph2="", out=str(tmp_path / "nothing")))


def test_rescoring_a_rounded_model_keeps_the_record_of_its_rounding(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(CHECKPOINTS / DEMO_MODEL, folder)
    store_half(folder)
    stored = {"dtype": "float16", "rounding": {"images": 300, "paths": {}}}
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "storage": stored}))
    scored = []
    monkeypatch.setattr(recipe, "score", lambda pipeline, config, rows: scored.append(len(rows)) or {
        "pipeline_test": {"images": 3, "classification": {"balanced_accuracy": 0.5}, "segmentation": {"dice": 0.9}}})
    monkeypatch.setattr(recipe, "with_splits", lambda folder, folders: [1, 2, 3])
    before = (folder / "model.safetensors").read_bytes()
    recipe.rescore(recipe.HAM10000Config(ham10000=str(tmp_path), isic2018_task1="", ph2="", out=str(folder)))
    after = json.loads((folder / "metrics.json").read_text())
    assert scored == [3] and after["storage"] == stored and after["pipeline_test"]["segmentation"]["dice"] == 0.9
    assert (folder / "model.safetensors").read_bytes() == before  # already fp16 values: not rewritten
