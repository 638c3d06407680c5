"""The same lesion captured or saved differently: how far the model's scores move with compression, colour and light.

    python -m experiments.capture                     # the default model, data in ../shared/data

Two uploads of one lesion differ in ways no clinician would call a different lesion: the file was sent through a
messenger and compressed again, the dermatoscope's white balance differs (warmer, cooler, greener), the exposure
or contrast differs. The model should give both the same answer. Each validation image of the model's
``splits.csv`` (HAM10000, with its age, sex and site) is diagnosed as it is and changed in one of these ways
(``conditions``), through the pipeline (the compute path the app takes on this CPU, ``describe=False``). Per
condition: balanced accuracy, macro AUC, melanoma AUC, ECE, the median top probability, the share the
assessability gate or the out-of-distribution warning flagged, and against the image as it is the median of each
image's largest probability change and the share whose top class changed.

Two more parts say what the rows mean:

- **Size and compression.** The validation images are 256 px, about the networks' own input, so JPEG's 8-px
  blocks reach the networks whole. The 140 PH2 images (765×572, melanoma or nevus; never trained on) are saved
  again at the same qualities at their own size: the model sees them shrunk, and the blocks with them.
- **White balance as a remedy.** Each image white-balanced to the training images' mean colour balance
  (:func:`dermfuse.data.colour_constancy.white_balanced`: Shades of Gray, p = 6, the colour-constancy step of
  several ISIC challenge entries) before the model: as it is and under each colour cast, and ISIC 2018 Task 1's
  validation nevi and melanomas (another clinic's cameras). For a model not trained on balanced images this shows
  what the step would remove and cost; a model that balances every image itself (``white_balance`` in its config,
  ``python -m train classifier --white_balance=true``) is balanced once more, which changes little.

Nothing is stored in the model. The limits of the compression caution (``COMPRESSION_WARNED`` in
``dermfuse/assess.py``) are read off the compression rows, after they were seen: at a size, the qualities at which the
top class changed on more than one image in ten (a test checks them against this file). Writes
``docs/results/capture.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dermfuse import DermFuse
from dermfuse.data import load_image, read_dataset
from dermfuse.data.colour_constancy import mean_light, white_balanced
from dermfuse.data.readers import read_isic2019
from dermfuse.data.transforms import channel_gains, jpeg_again
from dermfuse.metrics import binary_auc
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import DEFAULT_MODEL
from experiments.report_sections import capture_section
from experiments.resolution import classification_numbers
from experiments.split_predictions import diagnosed, flagged, split_rows
from experiments.stability import changes
from train.checkpoint import write_json
from train.config import command_line, parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "capture.json"
QUALITIES = (90, 75, 50, 30, 20, 10)  # JPEG quality of the second save (the stored images are quality 75)
CASTS = {"warmer": (1.15, 1.0, 0.85), "cooler": (0.85, 1.0, 1.15), "greener": (0.9, 1.15, 0.9),
         "more magenta": (1.1, 0.85, 1.1)}  # gains of R, G, B: a white balance 15 % off


@dataclass
class CaptureConfig:
    """Settings of ``python -m experiments.capture``."""

    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (HAM10000/, ISIC2018_Task1/, real/)
    batch: int = 16
    out: str = str(RESULTS)


def cast(gains: tuple[float, float, float]):
    """A colour cast: each channel multiplied by its gain (clipped), as a white balance set differently does."""
    return lambda image: channel_gains(image, gains)


def scaled(factor: float):
    """Brighter or darker: every channel multiplied by ``factor`` (clipped)."""
    return cast((factor, factor, factor))


def gamma(exponent: float):
    """A different tone curve: each value v (0–1) becomes v ** ``exponent``."""
    return lambda image: Image.fromarray(np.round(255 * (np.asarray(image, np.float32) / 255) ** exponent).astype(np.uint8))


def contrast(factor: float):
    """More or less contrast: each value moved ``factor`` times as far from the image's mean (clipped)."""
    def change(image):
        pixels = np.asarray(image, np.float32)
        return Image.fromarray(np.clip(pixels.mean() + factor * (pixels - pixels.mean()), 0, 255).astype(np.uint8))
    return change


def conditions() -> dict:
    """What is done to each image: name → function of a PIL image."""
    return {"as it is": lambda image: image,
            **{f"JPEG quality {q}": (lambda q: lambda image: jpeg_again(image, q))(q) for q in QUALITIES},
            **{f"colour cast: {name}": cast(gains) for name, gains in CASTS.items()},
            "darker (× 0.8)": scaled(0.8), "brighter (× 1.25)": scaled(1.25),
            "gamma 0.7": gamma(0.7), "gamma 1.5": gamma(1.5),
            "contrast × 0.6": contrast(0.6), "contrast × 1.4": contrast(1.4)}


def moved(results: list, reference: list) -> dict:
    """How far the scores moved from ``reference`` (the same images as they are), as the stability study measures it:
    the median of each image's largest probability change, and the share whose top class changed."""
    summary = changes(reference, results)
    return {"median_change": summary["median"], "top_class_changed": summary["top_class_changed"]}


def condition_numbers(results: list, reference: list | None, labels: np.ndarray, classes: list[str], ood_threshold: float) -> dict:
    """One row of the table: the classification numbers, the median top probability, the share flagged (not
    assessable, or warned as out of distribution) and, against ``reference``, how far the scores moved."""
    return {**classification_numbers(results, labels, classes),
            "median_top_probability": float(np.median([max(r.probabilities) for r in results])),
            "flagged": float(np.mean([flagged(r, ood_threshold) for r in results])), **(moved(results, reference) if reference is not None else {})}


def melanoma_auc(results: list, truth: np.ndarray, classes: list[str]) -> float:
    """Melanoma against nevus: the AUC of the melanoma score."""
    return binary_auc(truth, np.array([r.probabilities[classes.index("mel")] for r in results]))


def run_capture(config: CaptureConfig) -> dict:
    started = time.monotonic()
    model = DermFuse.from_pretrained(config.model)
    pipeline = DermFusePipeline(model)
    classes, threshold = list(model.classes), model.ood["threshold"]
    validation = split_rows(config.model, config.data, "val")
    labels = np.array([classes.index(label) for label in validation["label"]])
    table, baseline = {}, None
    for name, change in conditions().items():
        results = diagnosed(pipeline, validation, change, config.batch)
        baseline = baseline or results
        table[name] = row = condition_numbers(results, None if results is baseline else baseline, labels, classes, threshold)
        print(f"{name}: " + ", ".join(f"{key} {value:.3f}" for key, value in row.items()), flush=True)

    ph2 = read_dataset(Path(config.data) / "real")
    truth = (ph2["label"] == "mel").to_numpy()
    full_size, ph2_baseline = {}, None
    for name in ("as it is", *(f"JPEG quality {q}" for q in QUALITIES)):
        results = diagnosed(pipeline, ph2, conditions()[name], config.batch, metadata=False)
        ph2_baseline = ph2_baseline or results
        full_size[name] = row = {"melanoma_auc": melanoma_auc(results, truth, classes),
                                 **(moved(results, ph2_baseline) if results is not ph2_baseline else {})}
        print(f"PH2, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)

    training = split_rows(config.model, config.data, "train")["image_path"]
    reference = mean_light(load_image(path) for path in training)  # as python -m train classifier --white_balance does
    balance = lambda image: white_balanced(image, reference)  # noqa: E731
    balanced = {}
    for name in ("as it is", *(f"colour cast: {cast_name}" for cast_name in CASTS)):
        change = conditions()[name]
        results = diagnosed(pipeline, validation, lambda image, change=change: balance(change(image)), config.batch)
        balanced[name] = row = condition_numbers(results, baseline, labels, classes, threshold)
        print(f"white-balanced, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    isic = split_rows(config.model, config.data, "val", source="isic2018_task1").drop(columns="label")
    isic = isic.merge(read_isic2019(Path(config.data), images=False)[["image_id", "label"]], on="image_id")
    isic = isic[isic["label"].isin(["mel", "nv"])].reset_index(drop=True)
    isic_truth = (isic["label"] == "mel").to_numpy()
    other_clinic = {"images": len(isic), "melanomas": int(isic_truth.sum())}
    for name, change in (("as it is", lambda image: image), ("white-balanced", balance)):
        other_clinic[name] = melanoma_auc(diagnosed(pipeline, isic, change, config.batch, metadata=False), isic_truth, classes)
    print(f"ISIC 2018 validation, melanoma against nevus: {other_clinic}", flush=True)

    report = {"model": config.model, "path": "fast" if pipeline.fast else "fp32", "validation_images": len(validation),
              "conditions": table, "ph2_full_size": {"images": len(ph2), "melanomas": int(truth.sum()), "rows": full_size},
              "white_balance": {"reference_chromaticity": reference, "model_balances": model.white_balance is not None,
                                "validation": balanced, "isic2018_task1_validation": other_clinic},
              "minutes": (time.monotonic() - started) / 60, "command": command_line("experiments.capture", config)}
    write_json(config.out, report)
    print(capture_section(report, Path(config.out)))
    return report


def main(argv: list[str] | None = None) -> int:
    run_capture(parse_settings(CaptureConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
