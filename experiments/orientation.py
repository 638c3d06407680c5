"""The same lesion turned or mirrored: how far the model's scores and heatmaps move with the image's orientation.

    python -m experiments.orientation                 # the default model, data in ../shared/data

Dermoscopy has no "up": the dermatoscope is put on the skin at any angle, and an image may be mirrored by the camera
or by software. A clinician turning the same image expects the same answer, and heatmaps that turn with the image.
Training shows the classifier every one of the eight orientations of the square (``transforms.Augment``: flips and
quarter turns), which makes that likely but promises nothing. This measures how nearly it holds:

- **Scores.** Each validation image of the model's ``splits.csv`` (HAM10000, with its age, sex and site) is diagnosed
  in each orientation (``ORIENTATIONS``) through the pipeline (the compute path the app takes on this CPU,
  ``describe=False``). Per orientation: the classification numbers, the share flagged, and against the image as it
  is the median of each image's largest probability change, the share whose top class changed, and how closely the
  segmenter's mask, turned back, matches its mask of the image as it is (median Dice). Over all eight: the share of
  images whose top class is the same in every one.
- **Heatmaps.** The first ``--heatmap_images`` validation images are explained in each orientation, and each map is
  turned back into the frame of the image as it is. Per orientation and stream: the median correlation of that map
  with the map of the image as it is, and the median change of its lesion focus (its share of mass inside the
  predicted lesion mask).
- **Another clinic's shape.** The 140 PH2 images (765×572, never trained on; without metadata) in each orientation: a
  quarter turn makes them portrait, which changes what the image stream's central square shows.

Nothing is stored in the model. What the numbers decide was written down before the study was run (the README says
it). Writes ``docs/results/orientation.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermfuse import DermFuse
from dermfuse.data import read_dataset
from dermfuse.data.transforms import ORIENTATIONS, oriented
from dermfuse.metrics import mask_counts, segmentation_scores
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import DEFAULT_MODEL
from experiments.capture import condition_numbers, melanoma_auc, moved
from experiments.report_sections import orientation_section
from experiments.split_predictions import diagnosed, split_rows
from train.checkpoint import write_json
from train.config import command_line, parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "orientation.json"


@dataclass
class OrientationConfig:
    """Settings of ``python -m experiments.orientation``."""

    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (HAM10000/, real/)
    images: int = 0  # 0: every validation and PH2 image; else the first this many of each (a quick look)
    heatmap_images: int = 100  # how many validation images are explained in every orientation
    batch: int = 16
    out: str = str(RESULTS)


def turned(name: str):
    """The change that puts a PIL image in orientation ``name`` (``transforms.ORIENTATIONS``), as an array."""
    return lambda image: oriented(image, name)


def line(row: dict) -> str:
    """A row of numbers for the log (— where a number is undefined, as an AUC without both classes)."""
    return ", ".join(f"{key} {'—' if value is None else f'{value:.3f}'}" for key, value in row.items())


def same_everywhere(top_classes: dict[str, list[int]]) -> float:
    """The share of images whose top class is the same in every orientation (name → each image's top class index)."""
    tops = np.array(list(top_classes.values()))  # (orientations, images)
    return float((tops == tops[0]).all(axis=0).mean())


def mask_agreement(results: list, reference: list, back) -> float:
    """The median Dice of each image's lesion mask, turned ``back``, against its mask as it is: 1 where the segmenter
    outlined the turned lesion exactly as the lesion as it is."""
    counts = np.concatenate([mask_counts(back(r.mask), ref.mask) for r, ref in zip(results, reference)])
    return float(np.median(segmentation_scores(counts)["dice"]))


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two maps of the same frame; ``None`` where either is flat."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def heatmap_agreement(results: list, reference: list, back) -> dict:
    """Per stream, over the images explained both ways: the median correlation of each map, turned ``back``, with the
    map of the image as it is, and the median absolute change of its lesion focus."""
    summary = {}
    for stream in ("image", "lesion"):
        pairs = [(r, ref) for r, ref in zip(results, reference)
                 if r.heatmaps and ref.heatmaps and stream in r.heatmaps and stream in ref.heatmaps]
        correlations = [c for r, ref in pairs if (c := correlation(back(r.heatmaps[stream]), ref.heatmaps[stream])) is not None]
        focus = [abs(r.lesion_focus[stream] - ref.lesion_focus[stream]) for r, ref in pairs
                 if r.lesion_focus and ref.lesion_focus and None not in (r.lesion_focus.get(stream), ref.lesion_focus.get(stream))]
        summary[stream] = {"images": len(correlations),
                           "median_correlation": float(np.median(correlations)) if correlations else None,
                           "median_focus_change": float(np.median(focus)) if focus else None}
    return summary


def run_orientation(config: OrientationConfig) -> dict:
    started = time.monotonic()
    model = DermFuse.from_pretrained(config.model)
    pipeline = DermFusePipeline(model)
    classes, threshold = list(model.classes), model.ood["threshold"]
    validation = split_rows(config.model, config.data, "val")
    validation = validation.head(config.images) if config.images else validation
    labels = np.array([classes.index(label) for label in validation["label"]])
    table, tops, baseline = {}, {}, None
    for name, (_, back) in ORIENTATIONS.items():
        results = diagnosed(pipeline, validation, turned(name), config.batch)
        baseline = baseline or results
        table[name] = row = condition_numbers(results, None if results is baseline else baseline, labels, classes, threshold)
        if results is not baseline:
            row["mask_agreement"] = mask_agreement(results, baseline, back)
        tops[name] = [r.top_index for r in results]  # only these are kept: each orientation's results hold their images
        print(f"{name}: {line(row)}", flush=True)

    explained_rows = validation.head(config.heatmap_images)
    heatmaps, reference = {}, None
    for name, (_, back) in ORIENTATIONS.items():
        results = diagnosed(pipeline, explained_rows, turned(name), config.batch, explain=True)
        reference = reference or results
        if results is not reference:
            heatmaps[name] = heatmap_agreement(results, reference, back)
            print(f"heatmaps, {name}: {heatmaps[name]}", flush=True)

    ph2 = read_dataset(Path(config.data) / "real")
    ph2 = ph2.head(config.images) if config.images else ph2
    truth = (ph2["label"] == "mel").to_numpy()
    ph2_table, ph2_tops, ph2_baseline = {}, {}, None
    for name in ORIENTATIONS:
        results = diagnosed(pipeline, ph2, turned(name), config.batch, metadata=False)
        ph2_baseline = ph2_baseline or results
        ph2_table[name] = row = {"melanoma_auc": melanoma_auc(results, truth, classes),
                                 **(moved(results, ph2_baseline) if results is not ph2_baseline else {})}
        ph2_tops[name] = [r.top_index for r in results]
        print(f"PH2, {name}: {line(row)}", flush=True)

    report = {"model": config.model, "path": "fast" if pipeline.fast else "fp32", "validation_images": len(validation),
              "orientations": table, "same_top_class_in_all": same_everywhere(tops),
              "heatmaps": {"images": len(explained_rows), "orientations": heatmaps},
              "ph2": {"images": len(ph2), "melanomas": int(truth.sum()), "rows": ph2_table,
                      "same_top_class_in_all": same_everywhere(ph2_tops)},
              "minutes": (time.monotonic() - started) / 60, "command": command_line("experiments.orientation", config)}
    write_json(config.out, report)
    print(orientation_section(report, Path(config.out)))
    return report


def main(argv: list[str] | None = None) -> int:
    run_orientation(parse_settings(OrientationConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
