"""Helpers shared by the training tests: a tiny phantom set, and small-size stage settings."""

from __future__ import annotations

from pathlib import Path

import torch

from dermfuse.data.phantom import generate_dataset

# 28 phantoms (4 per class) split 50/25/25 by lesion: 14 train, 7 val, 7 test. 64 px inputs keep
# each optimisation step of the tiny preset well under a second on a 2-core CPU.
PHANTOMS, SPLIT = 28, ["--val_fraction=0.25", "--test_fraction=0.25"]
QUIET = ["--workers=0", "--progress=false", "--precision=fp32"]


def make_phantoms(root: Path, n: int = PHANTOMS, size: int = 64) -> Path:
    generate_dataset(root, n, seed=0, size=size, progress=False)
    return root


def segmenter_args(out: Path, data: Path, *extra: str) -> list[str]:
    """Stage-1 settings for the tiny set; ``extra`` ``--key=value`` settings replace the defaults."""
    return _merge([f"--out={out}", f"--data={data}", *SPLIT, *QUIET, "--segmentation_size=64", "--batch_size=4",
                   "--eval_batch_size=8", "--warmup_steps=2"], extra)  # fmt: skip


def classifier_args(out: Path, segmenter_run: Path, *extra: str) -> list[str]:
    """Stage-2 settings for the tiny set; ``extra`` ``--key=value`` settings replace the defaults."""
    return _merge([f"--out={out}", f"--segmenter={segmenter_run}", *QUIET, "--image_size=64", "--batch_size=4",
                   "--eval_batch_size=8", "--warmup_steps=2"], extra)  # fmt: skip


def _merge(defaults: list[str], extra) -> list[str]:
    settings = {arg.split("=", 1)[0]: arg for arg in defaults}
    settings.update({arg.split("=", 1)[0]: arg for arg in extra})
    return list(settings.values())


def weights(folder_or_checkpoint: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a run's checkpoint file."""
    return torch.load(folder_or_checkpoint, map_location="cpu", weights_only=True)["model"]
