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
from experiments.ham10000 import half_rounded, store_half, stored_bytes


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


def test_the_card_says_how_the_weights_differ_from_a_fresh_run():
    from publish.card import _reproduce

    plain = _reproduce({"command": "python -m train ham10000", "wall_time": "5 minutes"})
    told = _reproduce({"command": "python -m train ham10000", "history": "the segmenter was resumed to 8 epochs."})
    assert "differ from a from-scratch run" not in plain
    assert "How these weights differ from a from-scratch run of the command: the segmenter was resumed to 8 epochs." in told


def test_the_shipped_card_tells_its_history():
    card = (CHECKPOINTS / "dermfuse-small-ham10000" / "README.md").read_text(encoding="utf-8")
    assert "How these weights differ from a from-scratch run" in card and "8-epoch segmenter" in card
