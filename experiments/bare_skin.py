"""Bare skin: squares of real images that hold no lesion, and the least lesion contrast.

    python -m experiments.bare_skin                   # the default model, data in ../shared/data

The segmenter learned from images that always hold a lesion, so on bare skin it still outlines a patch (most often
near the centre), and the classifier gives that patch scores, often confident ones. Each image of a set is cut to its
largest square free of its expert lesion mask (grown by ``MARGIN`` px), with a side of at least the model's least side
(``min_image_side``; an image without such a square gives none), and the square is diagnosed through the pipeline (the
compute path the app takes on this CPU, ``describe=False``, without metadata). The squares come from the validation
splits of the model's ``splits.csv`` (HAM10000 and ISIC 2018 Task 1), from its test splits and from PH2's 140 images.

The lesion contrast is the gate's own (``dermfuse.assess.lesion_contrast``: ΔE*ab between the segmenter's lesion and a
thin ring of skin around it, on the 128-px white-balanced thumbnail). The least contrast is its ``--rejection`` quantile
(0.5 %, the gate's own share) over the model's *training* split (HAM10000 and ISIC 2018 Task 1, the segmenter's masks).
The rule was written after a scratch probe (not kept) had shown the contrast of the validation images and of bare-skin
squares of validation images and PH2, and before this study's numbers: it is stored as the model's
``min_lesion_contrast`` (then an image whose lesion, inside the frame, stands out less is not assessable,
``dermfuse/assess.py``) only if it turns away at most 1 % of the validation images as they are, at most 2 % of each
other source of real dermoscopy (the HAM10000 and ISIC 2018 Task 1 test splits, PH2 and the 40 CC0 originals), and at
least half of the validation squares the app diagnoses without it. The test splits' and PH2's squares are reported;
none of them chooses anything. Writes ``docs/results/bare_skin.json``; ``--store=false`` measures without storing.
While measuring, the model's stored least contrast is set aside.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from dermfuse import DermFuse
from dermfuse.assess import rule_reasons
from dermfuse.data import read_dataset
from dermfuse.pipeline import DermFusePipeline
from experiments.report_sections import bare_skin_section
from experiments.split_predictions import LeastValueSettings, diagnosed, diagnosed_images, folder_rows, split_rows, store_if_held
from train.checkpoint import write_json
from train.config import command_line, parse_settings

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "bare_skin.json"
MARGIN = 5  # px the expert mask is grown by, so a square holds none of the lesion's fuzzy edge
STRIDE = 8  # px between the sides and places of the squares tried
LIMITS = {"validation": 0.01, "other_sources": 0.02, "validation_squares_caught": 0.5}  # the rule above
SPLITS = {"validation": "val", "test": "test"}
SOURCES = {"HAM10000": "ham10000", "ISIC 2018": "isic2018_task1"}


@dataclass
class BareSkinConfig(LeastValueSettings):
    """Settings of ``python -m experiments.bare_skin`` (least value: the lesion contrast): those of
    :class:`~experiments.split_predictions.LeastValueSettings`, with this study's results file."""

    out: str = str(RESULTS)


def bare_square(mask: np.ndarray, least_side: int) -> tuple[int, int, int] | None:
    """(x, y, side) of the largest square free of the ``mask`` grown by ``MARGIN`` px, with a side of at least
    ``least_side`` (the first in reading order of those as large), or None when there is none."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * MARGIN + 1,) * 2, np.uint8))
    lesion = np.pad(grown.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table (H+1, W+1)
    for side in range(min(mask.shape), least_side - 1, -STRIDE):
        inside = lesion[side:, side:] - lesion[:-side, side:] - lesion[side:, :-side] + lesion[:-side, :-side]
        free = inside[::STRIDE, ::STRIDE] == 0  # (places down, places across)
        if free.any():
            row, column = np.argwhere(free)[0]
            return int(column * STRIDE), int(row * STRIDE), side
    return None


def bare_squares(rows: pd.DataFrame, least_side: int) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The rows that have a bare square, and each one's square (uint8 RGB)."""
    kept, squares = [], []
    for row in rows.itertuples():
        square = bare_square(np.asarray(Image.open(row.mask_path).convert("L")) >= 128, least_side)
        if square is not None:
            x, y, side = square
            kept.append(row.Index)
            squares.append(np.ascontiguousarray(np.asarray(Image.open(row.image_path).convert("RGB"))[y:y + side, x:x + side]))
    return rows.loc[kept].reset_index(drop=True), squares


def under_least(result, model: DermFuse, least: float) -> bool:
    """Whether the least contrast turns the image away: the rule fires with the model's other limits in place."""
    reasons = rule_reasons(result.assessment_numbers, model.min_image_side, model.min_sharpness, least)
    return any(reason.startswith("No lesion stands out") for reason in reasons)


def image_numbers(results: list, labels: pd.Series, model: DermFuse, least: float) -> dict:
    """Of real images: how many, the share diagnosed without the rule, the share it turns away, the share diagnosed with
    it; and of the images with a diagnosis (``labels``, one per result, NaN where unknown), how many of each class it
    turns away, and of those how many the model's top class had right."""
    caught = [under_least(r, model, least) for r in results]
    right = [r.top_class == label for r, label in zip(results, labels)]
    known = pd.DataFrame({"label": list(labels), "caught": caught, "right": right})
    known = known[known["label"].map(lambda label: isinstance(label, str))]
    by_class = known.groupby("label")["caught"].agg(["sum", "size"])  # turned away, images
    return {"images": len(results), "assessable_before": float(np.mean([r.assessable for r in results])),
            "under_least_contrast": float(np.mean(caught)),
            "assessable_after": float(np.mean([r.assessable and not c for r, c in zip(results, caught)])),
            "turned_away_by_class": {label: [int(row["sum"]), int(row["size"])] for label, row in by_class.iterrows()},
            "turned_away_top_class_right": int((known["caught"] & known["right"]).sum())}


def square_numbers(results: list, model: DermFuse, least: float) -> dict:
    """Of bare-skin squares: how many, how many the app diagnoses without the rule (and how sure its top class is), and
    how many of those the rule turns away."""
    diagnosed_before = [r for r in results if r.assessable]
    caught = [under_least(r, model, least) for r in diagnosed_before]
    return {"squares": len(results), "diagnosed_before": len(diagnosed_before),
            "median_top_probability_before": float(np.median([max(r.probabilities) for r in diagnosed_before]))
            if diagnosed_before else None,
            "caught": int(sum(caught)), "diagnosed_after": len(diagnosed_before) - int(sum(caught))}


def training_contrasts(pipeline: DermFusePipeline, rows: pd.DataFrame, batch: int, chunk: int = 512) -> list[float]:
    """The lesion contrast of each training image (read ``chunk`` at a time, so the split is never in memory at once)."""
    values = []
    for start in range(0, len(rows), chunk):
        results = diagnosed(pipeline, rows.iloc[start:start + chunk], lambda image: image, batch, metadata=False)
        values += [r.assessment_numbers["lesion_delta_e"] for r in results]
    return values


def run_bare_skin(config: BareSkinConfig) -> dict:
    started = time.monotonic()
    model = DermFuse.from_pretrained(config.model)
    model.min_lesion_contrast = 0.0  # the stored value, set aside while measuring
    pipeline = DermFusePipeline(model)
    rows = {(split, source): split_rows(config.model, config.data, split_name, source_name)
            for split, split_name in SPLITS.items() for source, source_name in SOURCES.items()}
    training = pd.concat([split_rows(config.model, config.data, "train", name) for name in SOURCES.values()])
    least = float(np.quantile(training_contrasts(pipeline, training, config.batch), config.rejection))
    print(f"least lesion contrast: ΔE*ab {least:.2f} ({config.rejection:.1%} of {len(training)} training images)", flush=True)
    ph2 = read_dataset(Path(config.data) / "real")
    sets = {f"{source} {split}": part for (split, source), part in rows.items()}
    images, squares = {}, {}
    for name, part in {**sets, "PH2": ph2, "CC0 originals": folder_rows(config.data, "isic_cc0")}.items():
        results = diagnosed(pipeline, part, lambda image: image, config.batch, metadata=False)
        images[name] = image_numbers(results, part["label"], model, least)
        print(f"{name}: {images[name]}", flush=True)
        if name != "CC0 originals":  # the CC0 originals have no expert masks
            kept, cut = bare_squares(part, model.min_image_side)
            squares[name] = square_numbers(diagnosed_images(pipeline, kept, cut, config.batch, metadata=False), model, least)
            print(f"{name} bare squares: {squares[name]}", flush=True)
    validation = [name for name in images if name.endswith("validation")]
    shown = sum(squares[name]["diagnosed_before"] for name in validation)
    caught = sum(squares[name]["caught"] for name in validation)
    turned_away = (sum(images[n]["under_least_contrast"] * images[n]["images"] for n in validation)
                   / sum(images[n]["images"] for n in validation))
    allowed = (turned_away <= LIMITS["validation"] and shown > 0 and caught / shown >= LIMITS["validation_squares_caught"]
               and all(entry["under_least_contrast"] <= LIMITS["other_sources"]
                       for name, entry in images.items() if name not in validation))
    report = {"model": config.model, "path": "fast" if pipeline.fast else "fp32", "rejection": config.rejection,
              "training_images": len(training), "least_contrast": least, "least_side": model.min_image_side,
              "margin_px": MARGIN, "images": images, "squares": squares,
              "validation": {"images_turned_away": turned_away, "squares_diagnosed_before": shown, "squares_caught": caught},
              "limits": LIMITS, "rule_holds": allowed, "stored": bool(allowed and config.store),
              "minutes": (time.monotonic() - started) / 60, "command": command_line("experiments.bare_skin", config)}
    write_json(config.out, report)
    print(bare_skin_section(report, Path(config.out)))
    store_if_held(report, "min_lesion_contrast", least)
    return report


def main(argv: list[str] | None = None) -> int:
    run_bare_skin(parse_settings(BareSkinConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
