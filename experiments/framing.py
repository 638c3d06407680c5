"""Squeezed or cut: how the image stream should see a non-square frame, judged on images the classifier never saw.

    python -m experiments.framing                     # the default model, data in ../shared/data

The HAM10000 classifier learned from square images (the shared copy's are the central 450×450 of each
600×450 original). A 4:3 upload can reach its image stream whole, squeezed into the encoder's square input
(``image_framing: whole``), or as its central square (``central_square``, what its config now says). This
scores both on non-square dermoscopy the classifier never learned from, the model otherwise unchanged (same
weights, masks and lesion stream; no metadata, as the ISIC sets have none): the ISIC 2018 Task 1 images of
the model's *train* and *val* splits that carry an ISIC 2019 label (the segmenter learned from the first,
the classifier from none; the *test* split is left alone), the 140 PH2 images and the 40 CC0 originals.
Per set and framing: melanoma AUC (melanoma against the rest present), balanced accuracy over the classes
present (arg-max over all seven), log-loss. Writes ``docs/results/framing.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dermfuse import DermFuse
from dermfuse.constants import IMAGE_FRAMINGS
from dermfuse.data import read_dataset
from dermfuse.pipeline import Case, DermFusePipeline
from dermfuse.sources import DEFAULT_MODEL
from experiments.split_predictions import folder_rows, split_rows
from train.checkpoint import write_json
from train.config import parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "framing.json"
ISIC2019 = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AK": "akiec", "BKL": "bkl", "DF": "df", "VASC": "vasc"}


@dataclass
class FramingConfig:
    """Settings of ``python -m experiments.framing``."""

    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (ISIC2018_Task1/, ISIC_2019_Training_GroundTruth.csv, real/, isic_cc0/)
    batch: int = 16
    out: str = str(RESULTS)


def isic2019_labels(ground_truth: Path) -> pd.DataFrame:
    """``image_id``, ``label`` from the ISIC 2019 one-hot table, for the seven HAM10000 classes (SCC, UNK left out)."""
    table = pd.read_csv(ground_truth)
    one_hot = table[list(ISIC2019)]
    labelled = one_hot.max(axis=1) == 1
    return pd.DataFrame({"image_id": table.loc[labelled, "image"],
                         "label": one_hot[labelled].idxmax(axis=1).map(ISIC2019)}).reset_index(drop=True)


def image_sets(config: FramingConfig) -> dict[str, pd.DataFrame]:
    """The non-square labelled images, per set: ``image_path``, ``label``."""
    data = Path(config.data)
    isic = pd.concat([split_rows(config.model, data, split, "isic2018_task1") for split in ("train", "val")])
    isic = isic.drop(columns="label").merge(isic2019_labels(data / "ISIC_2019_Training_GroundTruth.csv"), on="image_id")
    sets = {"isic2018_task1_train_val": isic, "ph2": read_dataset(data / "real"), "isic_cc0": folder_rows(data, "isic_cc0")}
    return {name: table[table["label"].notna()].reset_index(drop=True) for name, table in sets.items()}


def scores(probabilities: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Melanoma AUC, balanced accuracy over the classes present, log-loss."""
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    present = sorted(set(labels))
    truth = probabilities[np.arange(len(labels)), [classes.index(label) for label in labels]]
    return {"melanoma_auc": float(roc_auc_score(labels == "mel", probabilities[:, classes.index("mel")])),
            "balanced_accuracy": float(np.mean([np.mean(predicted[labels == c] == c) for c in present])),
            "log_loss": float(-np.mean(np.log(np.clip(truth, 1e-12, 1.0)))), "classes": present}


def run_framing(config: FramingConfig) -> dict:
    started = time.monotonic()
    model = DermFuse.from_pretrained(config.model)
    sets = image_sets(config)
    report = {"model": config.model, "sets": {}}
    for framing in IMAGE_FRAMINGS:
        framed = DermFuse(**{**model.config, "image_framing": framing})
        framed.load_state_dict(model.state_dict())
        pipeline = DermFusePipeline(framed)
        for name, table in sets.items():
            rows = []
            for start in range(0, len(table), config.batch):
                cases = [Case(path) for path in table["image_path"][start:start + config.batch]]
                rows += [result.probabilities_without_metadata for result in pipeline.predict(cases, describe=False)]
            entry = report["sets"].setdefault(name, {"images": len(table), "labels": table["label"].value_counts().to_dict()})
            entry[framing] = scores(np.array(rows), table["label"].to_numpy(), list(model.classes))
    report["minutes"] = (time.monotonic() - started) / 60
    report["command"] = "python -m experiments.framing"
    write_json(config.out, report)
    print("| images | count | framing | melanoma AUC | balanced accuracy | log-loss |\n|---|---|---|---|---|---|")
    for name, entry in report["sets"].items():
        for framing in IMAGE_FRAMINGS:
            s = entry[framing]
            print(f"| {name} | {entry['images']} | {framing} | {s['melanoma_auc']:.3f} | {s['balanced_accuracy']:.3f} | "
                  f"{s['log_loss']:.3f} |")
    return report


def main(argv: list[str] | None = None) -> int:
    run_framing(parse_settings(FramingConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
