"""Does the classifier judge ISIC images better when it has learned from some? A fine-tune, chosen on validation.

    python -m experiments.isic_classifier manifest --out=runs/isic-cls/manifest.csv
    python -m train classifier --preset=small --segmenter=runs/seg-isic-ft/long --manifest=runs/isic-cls/manifest.csv \\
        --out=runs/isic-cls/run --classes=akiec,bcc,bkl,df,mel,nv,vasc --image_framing=central_square \\
        --name=dermfuse-small-ham10000 --epochs=4 --lr=1e-4 --warmup_steps=50 --jpeg_probability=0.3
    python -m experiments.isic_classifier validate --model=checkpoints/dermfuse-small-ham10000
    python -m experiments.isic_classifier validate --model=runs/isic-cls/run/model
    python -m experiments.isic_classifier adopt --run=runs/isic-cls/run --out=runs/isic-cls/adopted

The shipped classifier learned from HAM10000 alone and separates melanoma from nevus on ISIC 2018 Task 1
images far worse than on HAM10000's test split (``docs/results/framing.json``). Every ISIC 2018 Task 1 image
has its diagnosis (nevus, melanoma or seborrhoeic keratosis, "bkl") and age / sex / site in the ISIC 2019
tables. ``manifest`` keeps the shipped model's split (``splits.csv``) and labels the ISIC 2018 Task 1
*training* rows from those tables; their validation and test rows stay unlabelled, so the classifier's
best epoch and its calibration are chosen on HAM10000's validation split as before. The fine-tune starts
from the shipped classifier: the segmenter run named (``runs/seg-isic-ft/long``, the ISIC-weighted
segmenter fine-tune of ``experiments/isic_probe.py``) carries the shipped classifier's weights, and stage 2
keeps every weight whose shape fits; its masks are that segmenter's.

``validate`` scores a model through the pipeline on the validation splits only: HAM10000 (seven classes, with
and without metadata) and ISIC 2018 Task 1 (melanoma against nevus, no metadata, as the Task 1 layout has none).

``adopt`` exports the run into a model folder (not the shipped one) and scores its test splits through the
pipeline, as ``python -m train ham10000`` scores the model it ships; the README says what came of it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dermfuse.data import read_manifest, write_manifest
from dermfuse.data.readers import read_isic2019
from dermfuse.evaluate import evaluate
from dermfuse.pipeline import Case, DermFusePipeline
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from experiments.ham10000 import HAM10000Config, score
from experiments.isic_probe import table
from experiments.isic_rows import SHARED, isic_labelled
from publish.push import export
from train.checkpoint import MODEL_DIR, model_folder
from train.data import MANIFEST


def labelled_manifest(model: Path, data: Path) -> pd.DataFrame:
    """The model's split with the ISIC 2018 Task 1 training rows labelled (diagnosis, age, sex, site) from ISIC 2019."""
    return isic_labelled(table(model, data), data)


def validation_scores(model: str, data: Path) -> dict:
    """The validation numbers this study decides on (see the module docstring)."""
    pipeline = DermFusePipeline.from_pretrained(model)
    folder = Path(model) if (Path(model) / "splits.csv").is_file() else Path(model).parent  # a run's model/: the run's
    rows = table(folder, data)
    ham = rows[(rows["source"] == "ham10000") & (rows["split"] == "val")].reset_index(drop=True)
    metrics, _ = evaluate(pipeline, ham, progress=False)
    parts = {"ham10000_val": "classification", "ham10000_val_no_metadata": "classification_without_metadata"}
    results = {name: {key: metrics[part][key] for key in ("balanced_accuracy", "macro_auc", "ece") if key in metrics[part]}
               for name, part in parts.items()}
    isic = rows[(rows["source"] == "isic2018_task1") & (rows["split"] == "val")].drop(columns="label")
    isic = isic.merge(read_isic2019(data, images=False)[["image_id", "label"]], on="image_id")
    isic = isic[isic["label"].isin(["mel", "nv"])].reset_index(drop=True)
    diagnoses = pipeline.predict([Case(path) for path in isic["image_path"]], describe=False)
    melanoma = np.array([d.probabilities[pipeline.model.classes.index("mel")] for d in diagnoses])
    truth = (isic["label"] == "mel").to_numpy()
    results["isic2018_task1_val_melanoma_vs_nevus"] = {"images": len(isic), "melanomas": int(truth.sum()),
                                                       "auc": float(roc_auc_score(truth, melanoma))}
    return results


def adopt(run: Path, out: Path) -> Path:
    """Export ``run`` (a finished stage-2 run) into the model folder ``out`` with its test splits scored through the
    pipeline, as ``python -m train ham10000`` scores the model it ships (``experiments/ham10000.score``)."""
    if out.resolve() == (CHECKPOINTS / DEFAULT_MODEL).resolve():
        raise SystemExit(f"adopt writes the folder it scores: give it another --out than the shipped {out}")
    model = str(model_folder(run / MODEL_DIR))
    results = score(DermFusePipeline.from_pretrained(model), HAM10000Config(out=str(out), progress=False),
                    read_manifest(run / MANIFEST))
    return export(run, out, results=results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("manifest", "validate", "adopt"))
    parser.add_argument("--run", default="runs/isic-cls/run", help="adopt: the fine-tuned stage-2 run")
    parser.add_argument("--model", default=str(CHECKPOINTS / DEFAULT_MODEL))
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--out", default="runs/isic-cls/manifest.csv", help="manifest: the file; adopt: the model folder")
    args = parser.parse_args(argv)
    if args.command == "manifest":
        rows = labelled_manifest(Path(args.model), Path(args.data))
        write_manifest(rows, args.out)
        print(rows[rows["split"] == "train"].groupby(["source", "label"]).size().to_string())
    elif args.command == "validate":
        print(json.dumps(validation_scores(args.model, Path(args.data)), indent=2))
    elif args.out.endswith(".csv"):
        parser.error("adopt writes a model folder: give --out=FOLDER (e.g. runs/isic-cls/adopted)")
    else:
        adopt(Path(args.run), Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
