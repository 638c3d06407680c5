"""Air bubbles, ink and rulers in the image: how far the model's scores, masks and heatmaps move with them.

    python -m experiments.artefacts                   # the default model, data in ../shared/data

Real dermoscopy often carries them: immersion fluid traps air bubbles, clinicians mark lesions with ink, and a ruler
lies beside the lesion for scale. A clinician expects the answer to be about the lesion, not about them. The
templates are real ones (Katsch, Rinner & Tschandl 2022, ``dermfuse.data.artefacts``), cut from HAM10000 images and
placed as their authors describe, around the expert lesion mask; ``experiments/real_artefacts.py`` trains on them as
a shortcut, this study only looks at the model as it is:

- **Scores and masks.** Each validation image of the model's ``splits.csv`` (HAM10000, with its age, sex and site) is
  diagnosed as it is and with one artefact of each kind (``KINDS``; the same artefact for an image in every run: its
  seed is the image id), through the pipeline (the compute path the app takes on this CPU, ``describe=False``). Per
  kind: the classification numbers, the share flagged, and against the image as it is the median of each image's
  largest probability change and the share whose top class changed; the median Dice of the segmenter's mask against
  the expert mask, and the artefact's median share of the image.
- **Heatmaps.** The first ``--heatmap_images`` validation images are explained as they are and with each kind. Per
  kind and stream: the median share of the map's mass on the artefact's footprint, and of the map of the image as it
  is on the same pixels (where the artefact was put).
- **Another clinic.** The 140 PH2 images (765×572, never trained on; without metadata; placed around their expert
  masks) with each kind: melanoma against nevus AUC, and how far the scores moved. Reported, added after the
  validation numbers were seen; nothing rests on it.

Nothing is stored in the model. What the numbers decide was written down before the study was run (the README says
it). Writes ``docs/results/artefacts.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermfuse import DermFuse
from dermfuse.data import load_image, load_mask, read_dataset
from dermfuse.data.artefacts import CITATION, KINDS, ArtefactInserter, load_templates
from dermfuse.metrics import mask_counts, segmentation_scores
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import DEFAULT_MODEL
from experiments.capture import condition_numbers, melanoma_auc, moved
from experiments.real_artefacts import with_artefact
from experiments.report_sections import artefacts_section
from experiments.split_predictions import diagnosed_images, split_rows
from train.checkpoint import write_json
from train.config import command_line, parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "artefacts.json"
NAMES = {"bubble": "air bubbles", "marking": "ink marking", "ruler": "ruler"}  # what a reader calls each kind


@dataclass
class ArtefactsConfig:
    """Settings of ``python -m experiments.artefacts``."""

    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (HAM10000/)
    templates: str = ""  # the artefact templates' folder (default: $DERMFUSE_ARTEFACTS, else data/artefacts)
    images: int = 0  # 0: every validation image; else the first this many (a quick look)
    heatmap_images: int = 100  # how many validation images are explained as they are and with each kind
    batch: int = 16
    out: str = str(RESULTS)


def mask_dice(results: list, experts: list[np.ndarray]) -> float:
    """The median Dice of the segmenter's masks against the expert masks."""
    counts = np.concatenate([mask_counts(r.mask, expert) for r, expert in zip(results, experts)])
    return float(np.median(segmentation_scores(counts)["dice"]))


def heat_on(results: list, footprints: list[np.ndarray]) -> dict:
    """Per stream, the median share of each heatmap's mass on its image's artefact footprint (``None`` without maps)."""
    shares = {}
    for stream in ("image", "lesion"):
        values = [float((r.heatmaps[stream] * footprint).sum() / r.heatmaps[stream].sum())
                  for r, footprint in zip(results, footprints)
                  if r.heatmaps and stream in r.heatmaps and r.heatmaps[stream].sum() > 0]
        shares[stream] = float(np.median(values)) if values else None
    return shares


def run_artefacts(config: ArtefactsConfig) -> dict:
    started = time.monotonic()
    model = DermFuse.from_pretrained(config.model)
    pipeline = DermFusePipeline(model)
    classes, threshold = list(model.classes), model.ood["threshold"]
    validation = split_rows(config.model, config.data, "val")
    validation = validation.head(config.images) if config.images else validation
    labels = np.array([classes.index(label) for label in validation["label"]])
    clean = [np.asarray(load_image(row.image_path)) for row in validation.itertuples()]
    experts = [load_mask(row.mask_path, image.shape[1::-1]) for row, image in zip(validation.itertuples(), clean)]
    baseline = diagnosed_images(pipeline, validation, clean, config.batch)
    table = {"as it is": {**condition_numbers(baseline, None, labels, classes, threshold),
                          "mask_dice": mask_dice(baseline, experts)}}
    print(f"as it is: {table['as it is']}", flush=True)

    explained_rows, heatmaps = validation.head(config.heatmap_images), {}
    explained_clean = diagnosed_images(pipeline, explained_rows, clean[:len(explained_rows)], config.batch, explain=True)
    templates = load_templates(config.templates or Path(config.data) / "artefacts")
    for kind in KINDS:
        inserter = ArtefactInserter(kind, templates=templates)
        changed = [with_artefact(row, inserter, row.mask_path) for row in validation.itertuples()]
        images, footprints = [np.asarray(image) for image, _ in changed], [footprint for _, footprint in changed]
        results = diagnosed_images(pipeline, validation, images, config.batch)
        table[kind] = {**condition_numbers(results, baseline, labels, classes, threshold),
                       "mask_dice": mask_dice(results, experts),
                       "artefact_area": float(np.median([footprint.mean() for footprint in footprints]))}
        print(f"{kind}: {table[kind]}", flush=True)
        explained = diagnosed_images(pipeline, explained_rows, images[:len(explained_rows)], config.batch, explain=True)
        heatmaps[kind] = {"with_artefact": heat_on(explained, footprints),
                          "as_it_is_same_pixels": heat_on(explained_clean, footprints),
                          "artefact_area": float(np.median([f.mean() for f in footprints[:len(explained_rows)]]))}
        print(f"heatmaps, {kind}: {heatmaps[kind]}", flush=True)

    ph2 = read_dataset(Path(config.data) / "real")
    ph2 = ph2.head(config.images) if config.images else ph2
    truth = (ph2["label"] == "mel").to_numpy()
    ph2_clean = [np.asarray(load_image(row.image_path)) for row in ph2.itertuples()]
    ph2_baseline = diagnosed_images(pipeline, ph2, ph2_clean, config.batch, metadata=False)
    ph2_rows = {"as it is": {"melanoma_auc": melanoma_auc(ph2_baseline, truth, classes)}}
    for kind in KINDS:
        inserter = ArtefactInserter(kind, templates=templates)
        images = [np.asarray(with_artefact(row, inserter, row.mask_path)[0]) for row in ph2.itertuples()]
        results = diagnosed_images(pipeline, ph2, images, config.batch, metadata=False)
        ph2_rows[kind] = {"melanoma_auc": melanoma_auc(results, truth, classes), **moved(results, ph2_baseline)}
        print(f"PH2, {kind}: {ph2_rows[kind]}", flush=True)

    report = {"model": config.model, "path": "fast" if pipeline.fast else "fp32", "validation_images": len(validation),
              "templates": CITATION, "names": NAMES, "conditions": table,
              "heatmaps": {"images": len(explained_rows), "kinds": heatmaps},
              "ph2": {"images": len(ph2), "melanomas": int(truth.sum()), "rows": ph2_rows},
              "minutes": (time.monotonic() - started) / 60, "command": command_line("experiments.artefacts", config)}
    write_json(config.out, report)
    print(artefacts_section(report, Path(config.out)))
    return report


def main(argv: list[str] | None = None) -> int:
    run_artefacts(parse_settings(ArtefactsConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
