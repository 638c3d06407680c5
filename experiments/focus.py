"""Out of focus: how the model fares on blurred images, and the least sharpness it needs.

    python -m experiments.focus                       # the default model, data in ../shared/data

A dermoscope held off the skin, a moving hand, or a small picture enlarged: the image is soft. On such images the
model may be wrong *and* sure. Each validation image of the model's ``splits.csv`` (HAM10000, with its age, sex and
site) is diagnosed as it is, blurred (Gaussian, σ of ``BLURS`` pixels at its 256-px size) and enlarged from a
64-px copy, through the pipeline (the compute path the app takes on this CPU, ``describe=False``). Per condition:
balanced accuracy, macro AUC, melanoma AUC, ECE, the median top probability, the share the assessability gate and
the out-of-distribution warning flagged already, and the share under the least sharpness below.

The sharpness is the gate's own (``dermfuse.ood.sharpness``: the log variance of the Laplacian of the image's
128-px grey thumbnail). The least sharpness is its ``--rejection`` quantile (0.5 %, the gate's own share) over the
model's *training* split. The rule was written after a scratch probe (not kept) had shown how the sharpness's low
quantiles on training and validation images split them from their blurred copies, and the lowest sharpness of PH2,
the CC0 originals and ISIC's validation split; before this study's numbers: it is stored as the model's
``min_sharpness`` (then an image under it is not assessable, ``dermfuse/assess.py``) only if it turns away at most
1 % of the validation images as they are, at least 80 % of those blurred with σ = 2, and at most 2 % of each other
source of real dermoscopy: the HAM10000 and ISIC 2018 Task 1 test splits, ISIC's validation split, PH2's 140 images
and the 40 CC0 originals (their sharpness only; none of them chooses anything). Writes ``docs/results/focus.json``;
``--store=false`` measures without storing. While measuring, the model's stored sharpness is set aside.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter

from dermfuse import DermFuse
from dermfuse.data import read_dataset
from dermfuse.ood import sharpness, thumbnail
from dermfuse.pipeline import DermFusePipeline
from experiments.report_sections import focus_section
from experiments.resolution import classification_numbers
from experiments.split_predictions import LeastValueSettings, diagnosed, flagged, folder_rows, split_rows, store_if_held
from train.checkpoint import write_json
from train.config import command_line, parse_settings

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "focus.json"
BLURS = (1, 2, 3, 5)  # Gaussian σ in pixels
ENLARGED_FROM = 64  # px: a thumbnail's side, enlarged back to the image's size
LIMITS = {"validation": 0.01, "blur_2_caught": 0.80, "other_sources": 0.02}  # the rule above


@dataclass
class FocusConfig(LeastValueSettings):
    """Settings of ``python -m experiments.focus`` (least value: the sharpness): those of
    :class:`~experiments.split_predictions.LeastValueSettings`, with this study's results file."""

    out: str = str(RESULTS)


def conditions() -> dict:
    """What is done to each image: name → function of a PIL image."""
    blurred = {f"blur σ={s}": (lambda s: lambda image: image.filter(ImageFilter.GaussianBlur(s)))(s) for s in BLURS}
    enlarged = lambda image: image.resize((ENLARGED_FROM,) * 2, Image.LANCZOS).resize(image.size, Image.BICUBIC)  # noqa: E731
    return {"as it is": lambda image: image, **blurred, f"enlarged from {ENLARGED_FROM} px": enlarged}


def image_sharpness(path) -> float:
    """The gate's sharpness of the image at ``path``."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return sharpness(cv2.cvtColor(thumbnail(pixels), cv2.COLOR_RGB2GRAY))


def condition_numbers(results: list, labels: np.ndarray, classes: list[str], least: float, ood_threshold: float) -> dict:
    """The classification numbers of one condition (as the resolution study's), its median top probability, the share
    flagged already (not assessable, or warned as out of distribution) and the share under the least sharpness."""
    return {**classification_numbers(results, labels, classes),
            "median_top_probability": float(np.median([max(r.probabilities) for r in results])),
            "flagged_before": float(np.mean([flagged(r, ood_threshold) for r in results])),
            "under_least_sharpness": float(np.mean([r.assessment_numbers["sharpness"] < least for r in results]))}


def other_sources(config: FocusConfig) -> dict[str, list]:
    """Image paths of each other source of real dermoscopy the least sharpness is measured on."""
    split = lambda name, source="ham10000": split_rows(config.model, config.data, name, source)["image_path"].tolist()  # noqa: E731
    return {"HAM10000 test": split("test"), "ISIC 2018 validation": split("val", "isic2018_task1"),
            "ISIC 2018 test": split("test", "isic2018_task1"),
            "PH2": read_dataset(Path(config.data) / "real")["image_path"].tolist(),
            "CC0 originals": folder_rows(config.data, "isic_cc0")["image_path"].tolist()}


def run_focus(config: FocusConfig) -> dict:
    started = time.monotonic()
    model = DermFuse.from_pretrained(config.model)
    model.min_sharpness = 0.0  # the stored value, set aside while measuring
    pipeline = DermFusePipeline(model)
    classes = list(model.classes)
    training = [image_sharpness(path) for path in split_rows(config.model, config.data, "train")["image_path"]]
    least = float(np.quantile(training, config.rejection))
    validation = split_rows(config.model, config.data, "val")
    labels = np.array([classes.index(label) for label in validation["label"]])
    table = {}
    for name, change in conditions().items():
        table[name] = row = condition_numbers(diagnosed(pipeline, validation, change, config.batch), labels, classes,
                                              least, model.ood["threshold"])
        print(f"{name}: " + ", ".join(f"{key} {value:.3f}" for key, value in row.items()), flush=True)
    elsewhere = {name: {"images": len(paths), "under_least_sharpness": float(np.mean([image_sharpness(p) < least for p in paths]))}
                 for name, paths in other_sources(config).items()}
    allowed = (table["as it is"]["under_least_sharpness"] <= LIMITS["validation"]
               and table["blur σ=2"]["under_least_sharpness"] >= LIMITS["blur_2_caught"]
               and all(entry["under_least_sharpness"] <= LIMITS["other_sources"] for entry in elsewhere.values()))
    report = {"model": config.model, "path": "fast" if pipeline.fast else "fp32", "rejection": config.rejection,
              "training_images": len(training), "least_sharpness": least, "validation_images": len(validation),
              "conditions": table, "other_sources": elsewhere, "limits": LIMITS, "rule_holds": allowed,
              "stored": bool(allowed and config.store), "minutes": (time.monotonic() - started) / 60,
              "command": command_line("experiments.focus", config)}
    write_json(config.out, report)
    print(focus_section(report, Path(config.out)))
    store_if_held(report, "min_sharpness", least)
    return report


def main(argv: list[str] | None = None) -> int:
    run_focus(parse_settings(FocusConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
