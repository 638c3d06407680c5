"""On which images from other clinics does the classifier fail? Melanoma against nevus, by kind of image.

    python -m experiments.other_clinics               # the default model, data in ../shared/data

The HAM10000 classifier separates melanoma from nevus far less well on ISIC archive images than on HAM10000's
own test split (the model card's "other clinics" numbers, from the ISIC 2018 Task 1 test split). This asks
where, on the ISIC 2018 Task 1 images of the model's *train* and *val* splits whose ISIC 2019 diagnosis is
nevus or melanoma (the segmenter learned from the first, the classifier from none; the *test* split is left
alone), each diagnosed through the pipeline with its age, sex and site. The melanoma score's AUC, melanoma
against nevus: overall, without metadata, and per group:

- the frame's shape, width / height to two decimals: the shared copies are 256 px wide, so a ratio stands for
  the originals' frame (a camera or collection), and groups under ``MIN_GROUP`` images are left out;
- the lesion's share of the frame (the pipeline's mask), in thirds;
- whether the age is known, whether the out-of-distribution warning flagged the image, and whether a calibration
  sticker is in view (``experiments/stickers.py``'s detector).

And the median melanoma score of the melanomas and of the nevi. Writes ``docs/results/other_clinics.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermfuse import DermFuse
from dermfuse.diagnosis import Diagnosis
from dermfuse.evaluate import table_cases
from dermfuse.metrics import binary_auc
from dermfuse.pipeline import DermFusePipeline
from dermfuse.predict import predict_all
from dermfuse.sources import DEFAULT_MODEL
from experiments.isic_rows import SHARED, SOURCES, isic_labelled, with_splits
from experiments.report_sections import other_clinics_section
from experiments.stickers import detect_stickers
from train.checkpoint import write_json
from train.config import parse_settings

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "other_clinics.json"
SPLITS = ("train", "val")
MIN_GROUP = 30  # frame shapes with fewer images are left out of that grouping


@dataclass
class OtherClinicsConfig:
    """Settings of ``python -m experiments.other_clinics``."""

    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (ISIC2018_Task1/, the ISIC 2019 tables)
    batch: int = 16
    out: str = str(RESULTS)


def image_rows(config: OtherClinicsConfig) -> pd.DataFrame:
    """The ISIC 2018 Task 1 rows of ``SPLITS`` labelled melanoma or nevus by ISIC 2019, with age, sex and site."""
    data = Path(config.data)
    rows = with_splits(Path(config.model), [data / SOURCES["isic2018_task1"]])
    rows = isic_labelled(rows[rows["split"].isin(SPLITS)], data, splits=SPLITS, every_row=False)
    return rows[rows["label"].isin(["mel", "nv"])].reset_index(drop=True)


def image_factors(results: list[Diagnosis]) -> pd.DataFrame:
    """Per diagnosed image: its melanoma score (with and without metadata) and what might explain a miss."""
    mel = results[0].classes.index("mel")
    return pd.DataFrame({
        "score": [r.probabilities[mel] for r in results],
        "score_without_metadata": [r.probabilities_without_metadata[mel] for r in results],
        "frame": [round(r.image.shape[1] / r.image.shape[0], 2) for r in results],
        "lesion_share": [float(r.mask.mean()) for r in results],
        "age_known": [r.metadata["age"] is not None for r in results],
        "ood_flagged": [r.ood_score is not None and r.ood_score > r.ood_threshold for r in results],
        "sticker": [bool(detect_stickers(r.image).any()) for r in results],
    })


def separation(melanoma: np.ndarray, score: np.ndarray) -> dict:
    """Images, melanomas and the AUC of ``score`` for melanoma against nevus (None with one diagnosis only)."""
    melanoma = np.asarray(melanoma, bool)
    return {"images": int(len(melanoma)), "melanomas": int(melanoma.sum()), "auc": binary_auc(melanoma, score)}


def by_group(melanoma: np.ndarray, factors: pd.DataFrame) -> dict:
    """Melanoma against nevus overall, without metadata, and per group of ``factors`` (``image_factors``)."""
    melanoma = np.asarray(melanoma, bool)
    score = factors["score"].to_numpy()

    def groups(keys: pd.Series, order: list[str] | None = None) -> dict:
        """``separation`` per value of ``keys`` (one per image; missing: the image is in no group), in ``order``."""
        return {key: separation(melanoma[chosen], score[chosen]) for key in order or sorted(keys.dropna().unique())
                if (chosen := (keys == key).to_numpy()).any()}

    counts = factors["frame"].value_counts()
    frames = factors["frame"].where(factors["frame"].isin(counts[counts >= MIN_GROUP].index)).map("{:.2f}".format, na_action="ignore")
    edges = np.quantile(factors["lesion_share"], [1 / 3, 2 / 3])
    sizes = [f"small (under {edges[0]:.3f})", f"middle ({edges[0]:.3f} to {edges[1]:.3f})", f"large (over {edges[1]:.3f})"]
    thirds = pd.Series(np.digitize(factors["lesion_share"], edges)).map(dict(enumerate(sizes)))
    yes_no = lambda column: factors[column].map({True: "yes", False: "no"})  # noqa: E731
    return {
        "all": separation(melanoma, score),
        "without_metadata": separation(melanoma, factors["score_without_metadata"].to_numpy()),
        "median_score": {"melanoma": float(np.median(score[melanoma])), "nevus": float(np.median(score[~melanoma]))},
        "groups": {"frame width / height": groups(frames),
                   "lesion share of the frame": groups(thirds, sizes),
                   "age known": groups(yes_no("age_known")),
                   "flagged out-of-distribution": groups(yes_no("ood_flagged")),
                   "calibration sticker in view": groups(yes_no("sticker"))},
    }


def run_other_clinics(config: OtherClinicsConfig) -> dict:
    started = time.monotonic()
    rows = image_rows(config)
    pipeline = DermFusePipeline(DermFuse.from_pretrained(config.model))
    results = predict_all(pipeline, table_cases(rows), batch_size=config.batch, progress=False, describe=False)
    report = {"model": config.model, "splits": list(SPLITS), "labels": rows["label"].value_counts().to_dict(),
              **by_group((rows["label"] == "mel").to_numpy(), image_factors(results)),
              "minutes": (time.monotonic() - started) / 60, "command": "python -m experiments.other_clinics"}
    write_json(config.out, report)
    print(other_clinics_section(report, Path(config.out)))
    return report


def main(argv: list[str] | None = None) -> int:
    run_other_clinics(parse_settings(OtherClinicsConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
