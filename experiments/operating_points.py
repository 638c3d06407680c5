"""Melanoma operating points of a model: fit them on its validation split, store them, measure them on its test split.

    python -m train operating-points                                  # the default model, data in ../shared/data
    python -m train operating-points --model=checkpoints/NAME --sensitivity=0.95 --specificity=0.8

The HAM10000 validation split of the model's ``splits.csv`` (the split that chose its epoch and fitted
its calibration; never the test split) goes through the pipeline once, with each image's age, sex
and site; ``dermfuse.operating_points.fit_operating_points`` picks the thresholds on the calibrated
melanoma score. They are written into ``<model>/config.json`` (``operating_points``: the app, the
case sheet, the JSON and the API then say where each case falls). The test split then measures
them, with the patient data and without any (most app users give none); the validation fit and the
test rates go to ``<model>/metrics.json`` and the model card, and to ``docs/results/operating_points.json``.
Predictions are cached in ``runs/predictions/`` (``experiments/split_predictions.py``), shared with
``python -m train skin-tone``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dermfuse.operating_points import POSITIVE, fit_operating_points, measure, rule_name
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import DEFAULT_MODEL
from experiments.split_predictions import cache_folder, predictions, split_rows, store_in_model
from train.checkpoint import write_json
from train.config import parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "operating_points.json"


@dataclass
class OperatingPointsConfig:
    """Settings of ``python -m train operating-points``."""

    stage = "operating-points"
    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv and a 'mel' class
    data: str = str(SHARED)  # the shared data folder (HAM10000/)
    sensitivity: float = 0.95  # the first rule: melanoma at this sensitivity on validation
    specificity: float = 0.80  # the second rule: melanoma at this specificity on validation
    out: str = str(RESULTS)

    def __post_init__(self):
        for name in ("sensitivity", "specificity"):
            if not 0.5 <= getattr(self, name) < 1:
                raise ValueError(f"--{name}={getattr(self, name)}: a share from 0.5 to below 1, e.g. 0.95")
        if not (Path(self.model) / "splits.csv").is_file():
            raise FileNotFoundError(f"--model={self.model}: no splits.csv there; the thresholds need the model's own split")


def run_operating_points(config: OperatingPointsConfig) -> dict:
    started = time.monotonic()
    pipeline = DermFusePipeline.from_pretrained(config.model)
    classes = list(pipeline.model.classes)
    if POSITIVE not in classes:
        raise ValueError(f"{config.model} has no '{POSITIVE}' class (classes {classes}): no melanoma score to threshold")
    folder = cache_folder(config.model)
    val = predictions(pipeline, split_rows(config.model, config.data, "val"), "ham10000_val", folder)
    test = predictions(pipeline, split_rows(config.model, config.data, "test"), "ham10000_test", folder)
    targets = (("sensitivity", config.sensitivity), ("specificity", config.specificity))
    fitted = fit_operating_points(val["label"] == POSITIVE, val[f"p_{POSITIVE}"], targets)
    positives = test["label"] == POSITIVE
    measured = {
        "val": fitted,
        "test": {"images": len(test), "positives": int(positives.sum()),
                 "with_metadata": measure(fitted, positives, test[f"p_{POSITIVE}"]),
                 "without_metadata": measure(fitted, positives, test[f"q_{POSITIVE}"])},
        "command": "python -m train operating-points" + ("" if config.model == f"checkpoints/{DEFAULT_MODEL}" else f" --model={config.model}"),
        "model": config.model, "minutes": (time.monotonic() - started) / 60,
    }
    metrics_path = Path(config.model) / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["operating_points"] = {key: measured[key] for key in ("val", "test", "command")}
    write_json(metrics_path, metrics)
    store_in_model(config.model, "operating_points", fitted)  # also rewrites the card from config and metrics
    write_json(config.out, measured)
    print(operating_points_table(measured))
    return measured


def operating_points_table(measured: dict) -> str:
    """Markdown: each rule's threshold with its validation rates and its test rates (with and without metadata)."""
    val, test = measured["val"], measured["test"]
    lines = [f"| rule | threshold | validation sensitivity / specificity ({val['images']} images, {val['positives']} melanomas) | "
             f"test sensitivity / specificity ({test['images']} images, {test['positives']} melanomas) | test, patient data "
             "unknown |", "|---|---|---|---|---|"]
    for point, with_meta, without in zip(val["points"], test["with_metadata"], test["without_metadata"]):
        lines.append(f"| {rule_name(point)} | {point['threshold']:.4f} | {point['sensitivity']:.3f} / {point['specificity']:.3f} | "
                     f"{with_meta['sensitivity']:.3f} / {with_meta['specificity']:.3f} | "
                     f"{without['sensitivity']:.3f} / {without['specificity']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run_operating_points(parse_settings(OperatingPointsConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
