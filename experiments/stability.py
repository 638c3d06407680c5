"""How far a model's scores move when the same image is saved again: a JPEG re-encode at quality 95.

    python -m experiments.stability                   # the default model, data in ../shared/data

A user who uploads the same lesion twice, once re-saved by a phone or a browser, expects the same scores.
This takes the first ``--images`` HAM10000 images of ``--split`` (test) in the model's ``splits.csv``, decodes each as
it is and after one more JPEG encode at ``--quality``, and diagnoses both (no metadata, ``describe=False``) on
each compute path this CPU has. Per path: the largest calibrated probability change of each image (median,
90th percentile, largest, how many over 0.05), how often the top class changes, and how often the lesion box
moved (with the median change where it did and where it did not). Writes ``docs/results/stability.json``.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermfuse import DermFuse
from dermfuse.pipeline import Case, DermFusePipeline, bf16_supported
from dermfuse.sources import DEFAULT_MODEL
from experiments.split_predictions import split_rows
from train.checkpoint import write_json
from train.config import command_line, parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "stability.json"


@dataclass
class StabilityConfig:
    """Settings of ``python -m experiments.stability``."""

    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (HAM10000/)
    split: str = "test"  # the model's HAM10000 split the images come from
    images: int = 300  # its first images
    quality: int = 95  # the JPEG quality of the second save
    batch: int = 16
    out: str = str(RESULTS)

    def __post_init__(self):
        if not 1 <= self.quality <= 100:
            raise ValueError(f"--quality={self.quality}: a JPEG quality from 1 to 100")


def saved_again(path: str, quality: int) -> bytes:
    """The image at ``path`` encoded once more as JPEG at ``quality``."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def changes(before: list, after: list) -> dict:
    """The summary of two lists of diagnoses of the same images."""
    largest = np.array([np.abs(np.array(a.probabilities) - np.array(b.probabilities)).max() for a, b in zip(before, after)])
    moved = np.array([a.lesion_box != b.lesion_box for a, b in zip(before, after)])
    return {"images": len(largest), "median": float(np.median(largest)), "p90": float(np.quantile(largest, 0.9)),
            "largest": float(largest.max()), "over_0.05": int((largest > 0.05).sum()),
            "top_class_changed": float(np.mean([a.top_class != b.top_class for a, b in zip(before, after)])),
            "box_moved": int(moved.sum()),
            "median_where_box_moved": float(np.median(largest[moved])) if moved.any() else None,
            "median_where_box_stayed": float(np.median(largest[~moved])) if (~moved).any() else None}


def run_stability(config: StabilityConfig) -> dict:
    started = time.monotonic()
    paths = split_rows(config.model, config.data, config.split)["image_path"].head(config.images).tolist()
    model = DermFuse.from_pretrained(config.model)
    report = {"model": config.model, "split": config.split, "quality": config.quality, "paths": {}}
    for name, fast in (("fast", True), ("fp32", False)):
        if fast and not bf16_supported(torch.device("cpu")):
            continue
        pipeline = DermFusePipeline(model, fast=fast)
        before, after = [], []
        for start in range(0, len(paths), config.batch):
            chunk = paths[start:start + config.batch]
            before += pipeline.predict([Case(path) for path in chunk], describe=False)
            after += pipeline.predict([Case(saved_again(path, config.quality)) for path in chunk], describe=False)
        report["paths"][name] = changes(before, after)
    report["minutes"] = (time.monotonic() - started) / 60
    report["command"] = command_line("experiments.stability", config)
    write_json(config.out, report)
    for name, row in report["paths"].items():
        print(f"{name}: largest probability change per image median {row['median']:.3f}, 90th percentile {row['p90']:.3f}, "
              f"largest {row['largest']:.3f}, {row['over_0.05']} of {row['images']} over 0.05; top class changed on "
              f"{100 * row['top_class_changed']:.1f} %; lesion box moved on {row['box_moved']}")
    return report


def main(argv: list[str] | None = None) -> int:
    run_stability(parse_settings(StabilityConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
