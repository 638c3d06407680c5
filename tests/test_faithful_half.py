"""The faithful fp16 rounding study's rounding: the fast path's bf16 weights kept, each weight within one fp16 step."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from dermfuse import DermFuse
from dermfuse.models.inference import inference_copy
from dermfuse.sources import CHECKPOINTS, DEMO_MODEL
from experiments.faithful_half import (FP16_NORMAL, FaithfulHalfConfig, bf16_bits, fast_networks, faithful_half,
                                      half_weight_names, run)
from experiments.ham10000 import store_half


def moved_bf16_weights(model: DermFuse, state: dict, names: set[str]) -> dict[str, np.ndarray]:
    """Where the fast path's bf16 weights from ``state`` differ from those of ``model``'s own weights."""
    other = DermFuse(**model.config).eval()
    other.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    modules, moved = dict(other.named_modules()), {}
    for prefix, network in fast_networks(model).items():
        wanted = bf16_bits(inference_copy(network), names, prefix)
        for name, bits in bf16_bits(inference_copy(modules[prefix]), names, prefix).items():
            moved[name] = (bits != wanted[name]).numpy()
    return moved


def test_faithful_rounding_keeps_the_fast_path_s_bf16_weights_where_plain_fp16_moves_them():
    model = DermFuse.from_pretrained(str(CHECKPOINTS / DEMO_MODEL)).eval()
    weights = model.state_dict()
    names = half_weight_names(model, kept_below=256)
    stored, differ = faithful_half(model, kept_below=256)
    assert {name for name, tensor in stored.items() if tensor.dtype == torch.float16} == names
    assert all(stored[name].dtype == torch.float32 for name in weights if "running_var" in name or name.endswith(".bias"))

    plain = {**weights, **{name: weights[name].half() for name in names}}
    assert sum(int(m.sum()) for m in moved_bf16_weights(model, plain, names).values()) > 1000  # nearest fp16 moves them

    moved = moved_bf16_weights(model, stored, names)
    assert sum(int(m.sum()) for m in moved.values()) == differ
    for name, where in moved.items():  # only stored weights too small for fp16's normal range may still move
        if where.any():
            assert name in names and (np.abs(weights[name].numpy()[where]) < FP16_NORMAL).all(), name
    for name in names:  # and no weight is more than one fp16 step from its fp32 value
        weight, half = weights[name].numpy(), stored[name].numpy()
        step = np.maximum(*(np.abs(np.nextafter(half, np.float16(side)).astype(np.float32) - half.astype(np.float32))
                            for side in (np.inf, -np.inf)))  # the larger of its two steps (they differ at a power of 2)
        assert (np.abs(half.astype(np.float32) - weight) <= step * 1.0001).all(), name


def test_weights_that_are_fp16_values_already_are_refused(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(CHECKPOINTS / DEMO_MODEL, folder)
    store_half(folder)
    with pytest.raises(ValueError, match="fp16 values already"):
        run(FaithfulHalfConfig(model=str(folder), out=str(tmp_path / "out.json")))
    assert not (tmp_path / "out.json").exists()
