"""The real-data experiment's own parts: fp16 storage of the weights and the run's bookkeeping."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from safetensors.torch import load_file

from dermfuse import DermFuse
from dermfuse.data.phantom import generate_phantom
from dermfuse.pipeline import Case, DermFusePipeline
from dermfuse.sources import CHECKPOINTS, DEMO_MODEL
from experiments.ham10000 import store_half


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


def test_the_card_says_how_the_weights_differ_from_a_fresh_run():
    from publish.card import _reproduce

    plain = _reproduce({"command": "python -m train ham10000", "wall_time": "5 minutes"})
    told = _reproduce({"command": "python -m train ham10000", "history": "the segmenter was resumed to 8 epochs."})
    assert "differ from a from-scratch run" not in plain
    assert "How these weights differ from a from-scratch run of the command: the segmenter was resumed to 8 epochs." in told


def test_the_shipped_card_tells_its_history():
    card = (CHECKPOINTS / "dermfuse-small-ham10000" / "README.md").read_text(encoding="utf-8")
    assert "How these weights differ from a from-scratch run" in card and "8-epoch segmenter" in card
