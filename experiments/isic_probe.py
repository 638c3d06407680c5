"""Can the shipped segmenter do better on ISIC 2018 Task 1? Fine-tunes and test-time flips, chosen on validation.

    python -m experiments.isic_probe manifest --out=runs/seg-isic-ft/manifest.csv
    python -m train segmenter --preset=small --pretrained=false --init=checkpoints/dermfuse-small-ham10000 \\
        --manifest=runs/seg-isic-ft/manifest.csv --out=runs/seg-isic-ft/run --epochs=4 --lr=3e-4 --warmup_steps=50
    python -m train segmenter --preset=small --pretrained=false --init=runs/seg-isic-ft/run/model \\
        --manifest=runs/seg-isic-ft/manifest.csv --out=runs/seg-isic-ft/run2 --epochs=8 --lr=2e-4 --warmup_steps=50
    python -m experiments.isic_probe validate                                       # the shipped segmenter
    python -m experiments.isic_probe validate --segmenter=runs/seg-isic-ft/run/model   # fine-tuned 4 epochs
    python -m experiments.isic_probe validate --segmenter=runs/seg-isic-ft/run2/model  # then 8 more
    python -m train segmenter --preset=small --pretrained=false --init=checkpoints/dermfuse-small-ham10000 \\
        --manifest=runs/seg-isic-ft/manifest.csv --out=runs/seg-isic-ft/long --epochs=20 --lr=3e-4 --warmup_steps=50
    python -m experiments.isic_probe validate --segmenter=runs/seg-isic-ft/long/model  # 20 epochs, one schedule
    cp -r checkpoints/dermfuse-small-ham10000 runs/adopted                           # a copy to put it into
    python -m experiments.isic_probe adopt --model=runs/adopted --segmenter=runs/seg-isic-ft/long

``manifest`` keeps the shipped model's split (``splits.csv``) and weights ISIC toward the training mix:
every ISIC 2018 Task 1 image, HAM10000 training images cut to 2,000 and validation to 500 (whole
lesions, seeded order); the test rows stay as they are and are never trained on. ``validate`` scores
the validation split of each source at each image's own resolution, as the pipeline does, with and
without flip test-time augmentation (mean of the probabilities of the plain, horizontally, vertically
and doubly flipped image), at three thresholds. Results printed.

``adopt`` puts a fine-tuned segmenter into a model folder (its weights only: the classifier, its calibration and the
split stay) and scores the model again as ``python -m train ham10000`` does (test splits through the pipeline, PH2,
fp16 storage), recording in the model card how the weights were made. Shipping such a model would also refit what
rests on the masks: the calibration on validation, then ``python -m train gate``, ``skin-tone``, ``operating-points``
and ``compute-paths``. The 20-epoch fine-tune was adopted into a copy, scored, and not shipped (the README says why).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from dermfuse import DermFuse
from dermfuse.data import write_manifest
from dermfuse.data.io import load_image_and_mask
from dermfuse.lesion import clean_mask
from dermfuse.metrics import mask_counts, segmentation_scores
from dermfuse.pipeline import DermFusePipeline
from dermfuse.models.dermfuse import WEIGHTS_FILE
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from experiments.isic_rows import SHARED, SOURCES, isic_weighted, with_splits
from experiments.ham10000 import HAM10000Config, score
from publish.push import rewrite_card
from train.checkpoint import write_json
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FLIPS = {"plain": (), "horizontal": (3,), "vertical": (2,), "both": (2, 3)}
THRESHOLDS = (0.4, 0.5, 0.6)


def table(model: Path, data: Path) -> pd.DataFrame:
    """Both sources' images with masks in the shared data folder ``data``, each with its split from ``model``'s."""
    return with_splits(model, [data / folder for folder in SOURCES.values()])


def validation_dice(pipeline: DermFusePipeline, rows: pd.DataFrame, batch: int = 16) -> pd.DataFrame:
    """Mean Dice and images under 0.7, per test-time view and threshold, at each image's resolution."""
    network, scores = pipeline._networks["segmenter"], {}
    for start in range(0, len(rows), batch):
        chunk = rows.iloc[start:start + batch]
        pairs = [load_image_and_mask(image, mask) for image, mask in zip(chunk["image_path"], chunk["mask_path"])]
        inputs = pipeline._batch([image for image, _ in pairs], pipeline.model.segmentation_size)
        with torch.inference_mode(), pipeline._autocast():
            views = {name: torch.sigmoid(network(inputs.flip(dims) if dims else inputs).float()) for name, dims in FLIPS.items()}
        views = {name: (view.flip(FLIPS[name]) if FLIPS[name] else view)[:, 0].numpy() for name, view in views.items()}
        combined = {"plain": views["plain"], "flips averaged": sum(views.values()) / len(views)}
        for name, probabilities in combined.items():
            for probability, (image, truth) in zip(probabilities, pairs):
                full = cv2.resize(probability, image.size, interpolation=cv2.INTER_LINEAR)
                for threshold in THRESHOLDS:
                    counts = mask_counts(clean_mask(full, threshold), np.asarray(truth, bool))
                    scores.setdefault((name, threshold), []).append(segmentation_scores(counts)["dice"][0])
    return pd.DataFrame([{"view": name, "threshold": threshold, "dice": np.mean(values), "under_0.7": int(np.sum(np.array(values) < 0.7))}
                         for (name, threshold), values in scores.items()])


def adopt(model_dir: Path, segmenter_run: Path, data: Path) -> dict:
    """Replace the segmenter weights in ``model_dir`` by those of ``segmenter_run``'s model, score the model again,
    and write the scores, the segmenter's run and how the weights were made into its metrics and card."""
    weights = model_dir / WEIGHTS_FILE
    with safe_open(str(weights), framework="pt") as handle:
        stored = handle.metadata()
    tensors = load_file(str(weights))
    segmenter = {k: v for k, v in load_file(str(segmenter_run / "model" / WEIGHTS_FILE)).items() if k.startswith("segmenter.")}
    if set(segmenter) != {k for k in tensors if k.startswith("segmenter.")}:
        raise ValueError(f"{segmenter_run}/model has another segmenter architecture than {model_dir}")
    tensors.update({k: v.to(tensors[k].dtype) for k, v in segmenter.items()})
    save_file(tensors, str(weights), metadata=stored)

    run = json.loads((segmenter_run / "metrics.json").read_text(encoding="utf-8"))
    recipe = json.loads((segmenter_run / "train_config.json").read_text(encoding="utf-8"))
    # Scored as `python -m train ham10000` scores a fresh run; the fast path's numbers are this CPU's (bf16 kernels
    # differ with AMX).
    config = HAM10000Config(ham10000=str(data / SOURCES["ham10000"]), isic2018_task1=str(data / SOURCES["isic2018_task1"]),
                            isic2019_tables=str(data),
                            ph2=str(data / "real"), out=str(model_dir), progress=False)
    rows = table(model_dir, data)
    model = DermFuse.from_pretrained(str(model_dir))
    results = score(DermFusePipeline(model), config, rows)
    metrics_path = model_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics.update(results, segmenter={"run": str(segmenter_run), "test": run["test"], "best_epoch": run["best_epoch"]})
    metrics["reproduce"]["history"] += (
        f" Then the segmenter was fine-tuned ({len(run['epochs'])} epochs at learning rate {recipe['lr']:g} from these "
        f"weights, on the training rows of `{recipe['manifest'] or recipe['data']}`, the best epoch by validation Dice "
        "kept: the commands in `experiments/isic_probe.py`), chosen on the validation splits, and put into "
        "the model; the classifier, its calibration and the split are unchanged, so the classifier learned from, and was "
        "calibrated on, the earlier segmenter's lesion images. The segmenter's learning curves are the fine-tune's.")
    write_json(metrics_path, metrics)
    if (segmenter_run / "learning_curves.png").is_file():
        shutil.copy2(segmenter_run / "learning_curves.png", model_dir / "segmenter_learning_curves.png")
    rewrite_card(model_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("manifest", "validate", "adopt"))
    parser.add_argument("--model", default=str(CHECKPOINTS / DEFAULT_MODEL), help="the shipped model folder (its splits.csv)")
    parser.add_argument("--data", default=str(SHARED), help="the folder holding HAM10000/ and ISIC2018_Task1/")
    parser.add_argument("--out", default="runs/seg-isic-ft/manifest.csv", help="manifest: where to write it")
    parser.add_argument("--segmenter", default="", help="validate: a saved model whose segmenter replaces the shipped one; "
                        "adopt: a segmenter run folder (with model/ and metrics.json) whose segmenter goes into --model")
    args = parser.parse_args(argv)
    if args.step == "adopt":
        if not args.segmenter:
            raise SystemExit("adopt needs --segmenter=<segmenter run folder>")
        if Path(args.model).resolve() == (CHECKPOINTS / DEFAULT_MODEL).resolve():
            raise SystemExit(f"adopt rewrites --model's weights, metrics and card: give it a copy "
                             f"(cp -r {CHECKPOINTS / DEFAULT_MODEL} runs/adopted; --model=runs/adopted), not the shipped model")
        results = adopt(Path(args.model), Path(args.segmenter), Path(args.data))
        print(json.dumps(results["segmentation_by_source"], indent=1))
        return 0
    rows = table(Path(args.model), Path(args.data))
    if args.step == "manifest":
        chosen = isic_weighted(rows)
        write_manifest(chosen, args.out)
        print(chosen.groupby(["source", "split"]).size().to_string())
        return 0
    model = DermFuse.from_pretrained(args.model)
    if args.segmenter:
        model.segmenter.load_state_dict(DermFuse.from_pretrained(args.segmenter).segmenter.state_dict())
    pipeline = DermFusePipeline(model)
    for source in SOURCES:
        val = rows[(rows["source"] == source) & (rows["split"] == "val")].reset_index(drop=True)
        print(f"{source}, validation split ({len(val)} images):\n{validation_dice(pipeline, val).to_string(index=False)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
