"""fp16 storage that keeps the fast path's bf16 weights: how close it comes to the 0.01 tolerance (a study; not shipped).

A study of fp32 weights: it was run on the shipped model before its weights were rounded to fp16 (2026-12-07), and
refuses weights that are fp16 values already.

    python -m experiments.faithful_half --model=FOLDER                       # its HAM10000 test split
    python -m experiments.faithful_half --model=FOLDER --split=val --images=300

Plain fp16 storage rounds each weight to its nearest fp16 value. The fast path then folds each batch norm
into the convolution before it and rounds the result to bf16 (``dermfuse/models/inference.py``), and
fp16-then-bf16 is not bf16 rounding: 390,130 of the shipped model's 10.9 million land in another bf16 value, so
masks and scores move (``python -m train compute-paths``: up to 0.26 on the fast path). Here the fp16 value of each
weight is chosen so that the fast path's bf16 weight stays what the fp32 weights give: the nearest fp16
value, or where that changes the bf16 weight, its neighbour on the weight's other side (one fp16 step from
the weight at most, instead of half a step). What is stored in fp16: the weights of convolutions and linear
layers (and attention's input projections) of at least ``--kept_below`` values. Everything else stays fp32
(batch norms, biases, embeddings), so the folded biases are the fp32 model's. Weights under fp16's normal
range (2^-14) cannot keep their bf16 value in every case. For them the nearest fp16 value is taken.

For each compute path, against the fp32 weights on the same path, on ``--images`` images of ``--split`` with
their patient data: the largest probability change, the images over the 0.01 tolerance, and how many of those
had their lesion box moved (``experiments.compute_paths.storage_agreement``). Also the file's size. Results
go to ``docs/results/faithful_half.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from dermfuse import DermFuse
from dermfuse.evaluate import table_cases
from dermfuse.models.inference import inference_copy
from dermfuse.sources import DEFAULT_MODEL
from experiments.compute_paths import SHARED, cpu_description, storage_agreements
from experiments.ham10000 import fp16_exact
from experiments.split_predictions import split_rows
from train.checkpoint import write_json
from train.config import command_line, parse_settings

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "faithful_half.json"
FP16_NORMAL = 2.0**-14  # fp16's smallest normal number: under it the steps are too coarse to keep a bf16 value


@dataclass
class FaithfulHalfConfig:
    """Settings of ``python -m experiments.faithful_half``."""

    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)
    split: str = "test"  # the model's HAM10000 split to compare on
    images: int = 0  # the first this many of the split (0: all)
    kept_below: int = 1024  # weights of fewer values stay fp32
    out: str = str(RESULTS)

    def __post_init__(self):
        if self.images < 0 or self.kept_below < 0:
            raise ValueError(f"--images={self.images}, --kept_below={self.kept_below}: counts, 0 or more")


def half_weight_names(model: nn.Module, kept_below: int) -> set[str]:
    """The state-dict names stored in fp16: convolution and linear weights, attention's input projections."""
    names = set()
    for prefix, module in model.named_modules():
        for name in ("weight", "in_proj_weight"):
            tensor = getattr(module, name, None) if isinstance(module, (nn.Conv2d, nn.Linear, nn.MultiheadAttention)) else None
            if isinstance(tensor, torch.Tensor) and tensor.numel() >= kept_below:
                names.add(f"{prefix}.{name}")
    return names


def fast_networks(model: DermFuse) -> dict[str, nn.Module]:
    """The networks the fast path runs from its inference copy, by their state-dict prefix."""
    prefixes = {id(module): name for name, module in model.named_modules()}
    return {prefixes[id(network)]: network for network in model.inference_networks().values()}


def bf16_bits(fast_copy: nn.Module, half: set[str], prefix: str) -> dict[str, torch.Tensor]:
    """The bf16 weights the fast path computes with, as int16 bits: its bf16 tensors, and the fp32 linear
    weights stored in fp16 (autocast casts those to bf16 when it calls them)."""
    bits = {}
    for name, tensor in fast_copy.state_dict().items():
        if tensor.dtype == torch.bfloat16 or f"{prefix}.{name}" in half:
            bits[f"{prefix}.{name}"] = tensor.bfloat16().view(torch.int16)
    return bits


def faithful_half(model: DermFuse, kept_below: int, rounds: int = 4) -> tuple[dict[str, torch.Tensor], int]:
    """The state dict with :func:`half_weight_names` in fp16, each chosen to keep the fast path's bf16 weight;
    and how many bf16 weights still differ (all under fp16's normal range)."""
    weights = model.state_dict()
    names = half_weight_names(model, kept_below)
    half = {name: weights[name].half() for name in names}
    wanted = {}
    for prefix, network in fast_networks(model).items():
        wanted.update(bf16_bits(inference_copy(network), names, prefix))
    towards: dict[str, np.ndarray] = {}  # each weight's side of its nearest fp16 value, fixed at the first round
    rounded = DermFuse(**model.config).eval()
    for attempt in range(rounds + 1):
        rounded.load_state_dict({**weights, **{name: tensor.float() for name, tensor in half.items()}})
        modules = dict(rounded.named_modules())
        moved = {name: (bits != wanted[name]).numpy() for prefix in fast_networks(model)
                 for name, bits in bf16_bits(inference_copy(modules[prefix]), names, prefix).items()}
        differ = sum(int(m.sum()) for m in moved.values())
        if not differ or attempt == rounds:
            return {**weights, **half}, differ
        for name, where in moved.items():
            if not where.any():
                continue
            assert name in half, f"{name} moved on the fast path but is stored in fp32"
            weight, stored = weights[name].numpy(), half[name].numpy().copy()
            side = towards.setdefault(name, np.where(weight >= stored.astype(np.float32), np.inf, -np.inf).astype(np.float16))
            fixable = where & (np.abs(weight) >= FP16_NORMAL)
            stored[fixable] = np.nextafter(stored[fixable], side[fixable])
            half[name] = torch.from_numpy(stored)
    raise AssertionError("unreachable: the last round returns")


def file_bytes(state: dict[str, torch.Tensor]) -> int:
    """The size of a safetensors file holding ``state``, header included."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(path))
        return path.stat().st_size


def run(config: FaithfulHalfConfig) -> dict:
    started = time.monotonic()
    model = DermFuse.from_pretrained(config.model).eval()
    if fp16_exact(model):
        raise ValueError(f"--model={config.model}: its weights are fp16 values already (the shipped model's are, since "
                         "2026-12-07), so there is nothing to keep: this study needs fp32 weights, e.g. the model as "
                         "it was before its rounding (the repository's history holds it)")
    stored, differ = faithful_half(model, config.kept_below)
    rounded = DermFuse(**model.config).eval()
    rounded.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in stored.items()})
    rows = split_rows(config.model, config.data, config.split)
    cases = table_cases(rows.head(config.images) if config.images else rows)
    results = {"model": config.model, "split": config.split, "images": len(cases), "kept_below": config.kept_below,
               "cpu": cpu_description(), "bf16_weights_still_moved": differ,
               "file_mb": {"fp32": file_bytes(model.state_dict()) / 1e6, "faithful_fp16": file_bytes(stored) / 1e6},
               "paths": storage_agreements(model, rounded, cases)}
    for name, numbers in results["paths"].items():
        print(f"{name}: {json.dumps(numbers)}", flush=True)
    results["command"] = command_line("experiments.faithful_half", config)
    results["minutes"] = (time.monotonic() - started) / 60
    write_json(config.out, results)
    return results


def main(argv: list[str] | None = None) -> int:
    run(parse_settings(FaithfulHalfConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
