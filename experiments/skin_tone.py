"""Skin tone (ITA°) of a model's training images, stored for the app's caution; and how the model does per skin tone.

    python -m train skin-tone                                  # the default model, data in ../shared/data
    python -m train skin-tone --model=checkpoints/NAME --rare=0.02

1. Fit: the ITA band of every HAM10000 image in the *train* split of the model's ``splits.csv``,
   measured around its expert (Tschandl) lesion mask (``dermfuse/skin_tone.py``; no network pass, so
   the whole split is cheap), stored in ``<model>/config.json`` as ``skin_tone``. The pipeline then
   cautions when an image's band holds under ``--rare`` of those images.
2. Measure: the ITA distribution of the HAM10000 *test* split and of the 40 CC0 full-resolution
   originals, each around the lesion the pipeline found, as a user sees it; on the test split the
   model's balanced accuracy (7 classes) and melanoma AUC per band, with counts, bootstrap 95 %
   intervals, and "too few to judge" under ``--min-images`` images or ``--min-melanomas`` melanomas;
   and how often the band from the pipeline's mask agrees with the band from the expert mask.

Writes ``docs/results/skin_tone.json`` (the RESULTS.md section) and rewrites the model card. Pipeline
predictions are cached in ``runs/predictions/`` (``experiments/split_predictions.py``), shared with
``python -m train operating-points``.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from dermfuse import skin_tone
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import DEFAULT_MODEL
from experiments.split_predictions import (
    cache_folder, expert_skin_tones, folder_rows, predictions, probabilities, split_rows, store_in_model,
)  # fmt: skip
from train.checkpoint import write_json
from train.config import parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "skin_tone.json"
NOT_MEASURED = "not measurable"


@dataclass
class SkinToneConfig:
    """Settings of ``python -m train skin-tone``."""

    stage = "skin-tone"
    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (HAM10000/ with expert masks, isic_cc0/)
    fit: bool = True  # store the training split's bands in the model's config (false: only measure)
    rare: float = skin_tone.RARE_SHARE  # a band under this share of the training images is rare: the app cautions
    min_images: int = 30  # fewer test images in a band: too few to judge its balanced accuracy
    min_melanomas: int = 5  # fewer melanomas (or non-melanomas) in a band: too few to judge its melanoma AUC
    bootstrap: int = 1000  # resamples for the 95 % intervals
    seed: int = 0
    out: str = str(RESULTS)

    def __post_init__(self):
        if not 0 < self.rare < 0.5:
            raise ValueError(f"--rare={self.rare}: a small share, e.g. 0.02")
        if not (Path(self.model) / "splits.csv").is_file():
            raise FileNotFoundError(f"--model={self.model}: no splits.csv there; the training bands need the model's own split")


def distribution(tones: pd.DataFrame) -> dict:
    """Images per band (and not measurable, and with a colour cast) of a skin-tone table, with ITA quantiles."""
    measured = tones["band"].notna()
    ita = tones.loc[measured, "ita"].to_numpy(dtype=float)
    return {
        "images": len(tones), "measured": int(measured.sum()),
        "bands": {band: int((tones["band"] == band).sum()) for band in skin_tone.BAND_NAMES},
        "colour_cast": int(tones["colour_cast"].fillna(False).astype(bool).sum()),
        "not_measurable": tones.loc[~measured, "reason"].fillna("").str.split(":").str[0].value_counts().to_dict(),
        "ita_quantiles": {f"{q:g}": float(np.quantile(ita, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)} if len(ita) else None,
        "median_lightness": float(tones.loc[measured, "lightness"].median()) if len(ita) else None,
        "median_yellowness": float(tones.loc[measured, "yellowness"].median()) if len(ita) else None,
    }


def bootstrap_interval(metric, arrays: tuple[np.ndarray, ...], resamples: int, rng: np.random.Generator) -> list[float] | None:
    """95 % percentile interval of ``metric(*arrays)`` over resamples of the rows (those it cannot score skipped)."""
    values, n = [], len(arrays[0])
    with warnings.catch_warnings():  # a resample that lacks a class the model predicts: scored on the classes it has
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(resamples):
            rows = rng.integers(0, n, n)
            try:
                values.append(metric(*(a[rows] for a in arrays)))
            except ValueError:  # a resample with one class only
                continue
    return [float(v) for v in np.quantile(values, (0.025, 0.975))] if len(values) >= resamples // 2 else None


def per_band(table: pd.DataFrame, classes: list[str], min_images: int = 30, min_melanomas: int = 5,
             bootstrap: int = 1000, seed: int = 0) -> dict:
    """Per band (and not measurable): images, melanomas, labels, balanced accuracy and melanoma AUC with bootstrap
    95 % intervals, or why a number is too thin to judge (under ``min_images`` images; under ``min_melanomas``
    melanomas or other lesions)."""
    rng = np.random.default_rng(seed)
    labels = np.array([classes.index(label) for label in table["label"]])
    predicted = probabilities(table, classes).argmax(1)
    melanoma = table["p_mel"].to_numpy(dtype=float) if "mel" in classes else None
    groups = table["band"].fillna(NOT_MEASURED)
    out = {}
    for band in [*skin_tone.BAND_NAMES, NOT_MEASURED]:
        here = (groups == band).to_numpy()
        n, positives = int(here.sum()), int((labels[here] == classes.index("mel")).sum()) if melanoma is not None else 0
        row = {"images": n, "melanomas": positives, "colour_cast": int(table.loc[here, "colour_cast"].fillna(False).astype(bool).sum()),
               "labels": table.loc[here, "label"].value_counts().to_dict()}
        if n >= min_images:
            y, p = labels[here], predicted[here]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a band without some class: scored on those it has
                row["balanced_accuracy"] = float(balanced_accuracy_score(y, p))
            row["balanced_accuracy_ci"] = bootstrap_interval(balanced_accuracy_score, (y, p), bootstrap, rng)
        elif n:
            row["balanced_accuracy_thin"] = f"too few images to judge ({n} < {min_images})"
        if melanoma is not None and min(positives, n - positives) >= min_melanomas:
            y, s = labels[here] == classes.index("mel"), melanoma[here]
            row["melanoma_auc"] = float(roc_auc_score(y, s))
            row["melanoma_auc_ci"] = bootstrap_interval(roc_auc_score, (y, s), bootstrap, rng)
        elif n:
            row["melanoma_auc_thin"] = (f"too few melanomas or other lesions to judge ({positives} and {n - positives}; "
                                        f"{min_melanomas} of each needed)")
        out[band] = row
    return out


def agreement(pipeline_tones: pd.DataFrame, expert_tones: pd.DataFrame) -> dict:
    """The band and ITA from the pipeline's mask against those from the expert mask, on the images measured by both
    (the ITA difference also without the images where either has a colour cast, whose ITA is its limit)."""
    both = pipeline_tones.merge(expert_tones, on="image_id", suffixes=("_pipeline", "_expert"))
    both = both[both["band_pipeline"].notna() & both["band_expert"].notna()]
    difference = (both["ita_pipeline"] - both["ita_expert"]).abs()
    cast = both["colour_cast_pipeline"].astype(bool) | both["colour_cast_expert"].astype(bool)
    return {"images": len(both), "same_band": float((both["band_pipeline"] == both["band_expert"]).mean()),
            "median_abs_ita_difference": float(difference.median()),
            "images_without_colour_cast": int((~cast).sum()),
            "median_abs_ita_difference_without_colour_cast": float(difference[~cast].median())}


def run_skin_tone(config: SkinToneConfig) -> dict:
    started = time.monotonic()
    folder = cache_folder(config.model)
    train = expert_skin_tones(split_rows(config.model, config.data, "train"), "ham10000_train_expert", folder)
    training = skin_tone.band_distribution(
        [None if pd.isna(b) else b for b in train["band"]], split="train",
        how="HAM10000 train split of the model's splits.csv, skin around the expert (Tschandl) lesion masks",
        colour_cast=int(train["colour_cast"].fillna(False).astype(bool).sum()), rare_share=config.rare)
    if config.fit:
        store_in_model(config.model, "skin_tone", training)
    pipeline = DermFusePipeline.from_pretrained(config.model)
    classes = list(pipeline.model.classes)
    test_rows = split_rows(config.model, config.data, "test")
    test = predictions(pipeline, test_rows, "ham10000_test", folder)
    cc0 = predictions(pipeline, folder_rows(config.data, "isic_cc0"), "isic_cc0", folder)
    expert_test = expert_skin_tones(test_rows, "ham10000_test_expert", folder)
    bands = per_band(test, classes, config.min_images, config.min_melanomas, config.bootstrap, config.seed)
    report = {
        "model": config.model, "definition": skin_tone.DEFINITION, "source": skin_tone.SOURCE, "caveat": skin_tone.CAVEAT,
        "training": training,
        "ham10000_test": {**distribution(test), "per_band": bands,
                          "colour_cast_by_label": test.groupby("label")["colour_cast"].mean().round(3).to_dict(),
                          "pipeline_vs_expert_mask": agreement(test, expert_test)},
        "isic_cc0": distribution(cc0),
        "thin": {"min_images": config.min_images, "min_melanomas": config.min_melanomas, "bootstrap": config.bootstrap},
        "command": "python -m train skin-tone" + ("" if config.model == f"checkpoints/{DEFAULT_MODEL}" else f" --model={config.model}"),
        "minutes": (time.monotonic() - started) / 60,
    }
    write_json(config.out, report)
    print(band_table(report))
    return report


def band_table(report: dict) -> str:
    """Markdown: per band, the training images, the test images with the model's numbers, the CC0 originals."""
    training, test, cc0 = report["training"], report["ham10000_test"], report["isic_cc0"]

    def number(row, key):
        if key in row:
            low_high = row.get(f"{key}_ci")
            return f"{row[key]:.3f}" + (f" ({low_high[0]:.2f}–{low_high[1]:.2f})" if low_high else "")
        return "too few to judge" if f"{key}_thin" in row else "–"

    lines = ["| band | training images (share of the measurable) | test images (melanomas) | test labels | balanced accuracy "
             "(95 % CI) | melanoma AUC (95 % CI) | CC0 originals |", "|---|---|---|---|---|---|---|"]
    for band in [*skin_tone.BAND_NAMES, NOT_MEASURED]:
        row = test["per_band"][band]
        if band == NOT_MEASURED:
            trained, originals = f"{training['images'] - training['measured']}", cc0["images"] - cc0["measured"]
        else:
            count = training["counts"][band]
            trained, originals = f"{count} ({100 * count / training['measured']:.1f} %)", cc0["bands"][band]
        labels = ", ".join(f"{label} {n}" for label, n in row["labels"].items()) or "–"
        lines.append(f"| {band} | {trained} | {row['images']} ({row['melanomas']}) | {labels} | "
                     f"{number(row, 'balanced_accuracy')} | {number(row, 'melanoma_auc')} | {originals} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run_skin_tone(parse_settings(SkinToneConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
