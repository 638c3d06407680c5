"""Evaluate a model through the pipeline on a dataset table: metrics JSON and figures.

The numbers come from exactly the path a user's image takes (``DermFusePipeline``: masks at the
image's resolution, lesion images from the predicted masks, calibrated probabilities), so the
figures in a model card can be reproduced with ``dermfuse evaluate``.

A model that ships its split (``splits.csv``: every image it was trained or calibrated on) is checked
against the evaluated images (``training_overlap``), so a score on its own training images is never
printed as if it measured new ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures
from .data.io import load_image_and_mask
from .data.splits import read_manifest
from .metrics import classification_metrics, mask_counts, segmentation_metrics, segmentation_scores
from .pipeline import Case, DermFusePipeline
from .predict import predict_all


SPLITS_FILE = "splits.csv"


def model_splits(source: str) -> pd.DataFrame | None:
    """The split a model was fitted on (``image_id``, ``split``) from its folder or Hub repo; None if it has none."""
    folder = Path(source)
    if folder.is_dir():
        path = folder / SPLITS_FILE
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = Path(hf_hub_download(source, SPLITS_FILE))
        except EntryNotFoundError:
            return None
    return read_manifest(path, paths=False) if path.is_file() else None


def training_overlap(splits: pd.DataFrame | None, image_ids) -> dict:
    """How many of ``image_ids`` the model was trained (``train``) or calibrated (``val``) on, and how many of those
    only its segmenter learned from (``segmenter_only``: rows of ``splits.csv`` without a label, which stage 2, the
    classifier, never reads)."""
    if splits is None:
        return {"checked": False, "note": "the model has no splits.csv: whether these images were used to fit it is unknown"}
    ids = set(image_ids)
    used = splits[splits["image_id"].isin(ids) & splits["split"].isin(["train", "val"])]
    counts = {split: int((used["split"] == split).sum()) for split in ("train", "val")}
    unlabelled = int(used["label"].isna().sum()) if "label" in used.columns else 0
    overlap = {"checked": True, "images": len(ids), **counts, "segmenter_only": unlabelled}
    fitted = counts["train"] + counts["val"]
    if fitted and unlabelled == fitted:  # e.g. ISIC 2018 Task 1 images, which only the segmenter learned from
        overlap["warning"] = (f"{fitted} of these {len(ids)} images were used to fit this model's segmenter only "
                              f"({counts['train']} to train it, {counts['val']} to pick its epoch); its classifier never "
                              "learned from them, but their masks, and the lesion images cut along them, may be better "
                              "than on new images")  # fmt: skip
    elif fitted:
        overlap["warning"] = (f"{fitted} of these {len(ids)} images were used to fit this model "
                              f"({counts['train']} to train it, {counts['val']} to calibrate it and pick its epoch"
                              + (f"; {unlabelled} of them by its segmenter only" if unlabelled else "")
                              + "): scores on them overstate how it does on new images")  # fmt: skip
    return overlap


def table_cases(table: pd.DataFrame) -> list[Case]:
    """A dataset table's rows as the pipeline's cases: each image with its patient data, named by its id."""
    return [Case(row.image_path, row.age, row.sex, row.site, image_id=row.image_id) for row in table.itertuples()]


def evaluate(pipeline: DermFusePipeline, table: pd.DataFrame, batch_size: int = 16, progress: bool = True,
             explain: bool = False) -> tuple[dict, dict]:  # fmt: skip
    """Run the pipeline on every row; return (metrics, arrays for figures).

    Segmentation is scored where the row has a ``mask_path`` (at the image's resolution),
    classification where its label is one of the model's classes. ``explain`` adds Grad-CAM and
    ``lesion_focus``: the mean share of each stream's CAM mass inside the predicted mask.
    """
    if table.empty:
        raise ValueError("the evaluation table is empty: check the dataset path and the split")
    results = predict_all(pipeline, table_cases(table), batch_size=batch_size, explain=explain, progress=progress, describe=False)
    classes = list(pipeline.model.classes)
    metrics: dict = {"model": pipeline.model_info(), "images": len(results)}
    arrays: dict = {}

    counts, dice_by_image = [], {}
    for row, result in zip(table.itertuples(), results):
        if isinstance(row.mask_path, str):
            _, truth = load_image_and_mask(row.image_path, row.mask_path)
            counts.append(mask_counts(result.mask, truth)[0])
            dice_by_image[row.image_id] = float(segmentation_scores(counts[-1][None])["dice"][0])
    if counts:
        metrics["segmentation"] = segmentation_metrics(np.stack(counts))
        arrays["dice_by_image"] = dice_by_image

    labelled = [(i, classes.index(label)) for i, label in enumerate(table["label"]) if label in classes]
    if labelled:
        rows, labels = zip(*labelled)
        calibrated = np.array([results[i].probabilities for i in rows])
        without_metadata = np.array([results[i].probabilities_without_metadata for i in rows])
        # softmax((z + s) / T) raised to the power T, divided by exp(s) and renormalised is softmax(z): the
        # uncalibrated scores.
        uncalibrated = calibrated ** pipeline.model.temperature * np.exp(-np.asarray(pipeline.model.prior_shift or 0.0))
        uncalibrated /= uncalibrated.sum(1, keepdims=True)
        metrics["classification"] = classification_metrics(labels, calibrated, classes)
        metrics["classification_uncalibrated_ece"] = classification_metrics(labels, uncalibrated, classes)["ece"]
        metrics["classification_without_metadata"] = {
            k: v for k, v in classification_metrics(labels, without_metadata, classes).items()
            if k in ("accuracy", "balanced_accuracy", "macro_auc", "ece")
        }
        arrays.update(labels=np.array(labels), calibrated=calibrated, uncalibrated=uncalibrated)
        if results[rows[0]].ood_score is not None:  # which labelled images the OOD warning flagged
            arrays["ood_flagged"] = np.array([results[i].ood_score > results[i].ood_threshold for i in rows])
    if explain:
        focus = pd.DataFrame([r.lesion_focus for r in results if r.lesion_focus])
        metrics["lesion_focus"] = {stream: float(shares.mean()) for stream, shares in focus.items() if shares.notna().any()}
        metrics["no_lesion_found"] = float(np.mean([not r.lesion_found for r in results]))
    flagged = [r.ood_score > r.ood_threshold for r in results if r.ood_score is not None]
    if flagged:
        metrics["ood_flagged_share"] = float(np.mean(flagged))
    return metrics, arrays


def write_evaluation_report(metrics: dict, arrays: dict, classes: list[str], temperature: float, out_dir: Path) -> list[Path]:
    """metrics.json plus confusion matrix, ROC curves and reliability diagram PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=1))
    written = [path]
    if "labels" in arrays:
        cm = metrics["classification"]["confusion_matrix"]
        written.append(figures.confusion_matrix_figure(cm, classes, out_dir / "confusion_matrix.png"))
        written.append(figures.roc_curves(arrays["labels"], arrays["calibrated"], classes, out_dir / "roc_curves.png"))
        written.append(figures.reliability_diagram(arrays["labels"], arrays["uncalibrated"], arrays["calibrated"],
                                                   out_dir / "reliability.png", temperature=temperature))
    return written
