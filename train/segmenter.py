"""Stage 1: fit the lesion segmenter (BCE + soft Dice) on images with lesion masks.

    python -m train segmenter --data=/data/HAM10000 --preset=paper --out=runs/seg
    python -m train segmenter --phantoms=2000 --out=runs/seg-phantom        # synthetic, CPU, minutes

Reads top to bottom: configuration → data and split → model → training (``loop.fit``) → test
evaluation → artefacts. The whole ``DermFuse`` is built here (the preset and
``--segmentation_size`` fix its architecture) but only its segmenter is trained; stage 2 starts
from this run's model. Masks are scored after the pipeline's post-processing
(:func:`dermfuse.lesion.clean_mask`: threshold 0.5, largest component, holes filled) at the
segmenter's input size.

The run folder holds ``train_config.json``, ``splits.csv``, ``checkpoint.pt``, ``model/`` (best
validation Dice, safetensors), ``metrics.json`` (per epoch, then the test split) and
``learning_curves.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dermfuse import DermFuse, create_model
from dermfuse.data import Augment, SegmentationDataset
from dermfuse.figures import learning_curves
from dermfuse.lesion import clean_mask
from dermfuse.metrics import mask_counts, segmentation_metrics
from train.checkpoint import MODEL_DIR, model_folder, write_json
from train.config import SegmenterConfig, parse_config
from train.data import describe_data, prepare_table, require_data, split_counts
from train.loop import fit
from train.order import Shard, make_loader
from train.run_folder import open_run, resume_checkpoint
from train.runtime import Runtime, gather, setup_runtime, teardown_runtime

MONITOR = "dice"
CURVE_METRICS = ("dice", "iou", "thresholded_jaccard")


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0, dice_weight: float = 1.0) -> torch.Tensor:
    """``bce_weight`` · BCE + ``dice_weight`` · (1 − soft Dice), per image then averaged, in fp32."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probability = torch.sigmoid(logits).flatten(1)  # (B, H·W)
    target = target.flatten(1)
    dice = (2 * (probability * target).sum(1) + 1.0) / (probability.sum(1) + target.sum(1) + 1.0)  # (B,)
    return bce_weight * bce + dice_weight * (1.0 - dice.mean())


@torch.no_grad()
def evaluate_segmenter(model: DermFuse, dataset: SegmentationDataset, config: SegmenterConfig, runtime: Runtime) -> dict:
    """Loss and post-processed mask metrics on ``dataset``, sharded over processes and gathered."""
    model.segmenter.eval()
    loader = make_loader(dataset, Shard(len(dataset), runtime.rank, runtime.world_size), config.eval_batch_size, config, runtime)
    counts, loss_sum = [], 0.0
    for images, masks in loader:
        images, masks = runtime.to_device(images), runtime.to_device(masks)
        with runtime.autocast():
            logits = model.segmenter(images)  # (B, 1, H, W)
        loss_sum += float(segmentation_loss(logits, masks, config.bce_weight, config.dice_weight)) * len(images)
        probability = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        predicted = np.stack([clean_mask(p) for p in probability])
        counts.append(mask_counts(predicted, masks[:, 0].cpu().numpy() > 0.5))
    shares = gather((np.concatenate(counts) if counts else np.zeros((0, 4), np.int64), loss_sum), runtime)
    all_counts = np.concatenate([c for c, _ in shares])
    metrics = segmentation_metrics(all_counts)
    metrics["loss"] = sum(loss for _, loss in shares) / max(1, len(all_counts))
    return metrics


def run_segmenter(config: SegmenterConfig) -> Path:
    """Train stage 1 as ``config`` says; return the run folder."""
    runtime = setup_runtime(config)
    try:
        return _train(config, runtime)
    finally:
        teardown_runtime(runtime)


def _train(config: SegmenterConfig, runtime: Runtime) -> Path:
    require_data(config)
    run = open_run(config, runtime)

    # Data: images with lesion masks, split by lesion.
    table = prepare_table(config, runtime, run)
    with_masks = table[table["mask_path"].notna()]
    if with_masks.empty:
        raise ValueError("stage 1 needs lesion masks, and this dataset has none: use ISIC 2018 Task 1 or HAM10000 "
                         "with HAM10000_segmentations_lesion_tschandl/ (see `python -m train segmenter` without --data)")  # fmt: skip
    parts = {split: with_masks[with_masks["split"] == split] for split in ("train", "val", "test")}
    runtime.print(f"data: {describe_data(table)}; with masks: " + ", ".join(f"{s} {len(t)}" for s, t in parts.items()))
    if parts["val"].empty:
        if config.patience:
            raise ValueError("--patience needs a validation split with masks: raise --val_fraction or set --patience=0")
        runtime.print("no validation split: a fixed schedule of --epochs, the last epoch's model is kept")

    # Model: the whole DermFuse; only the segmenter trains here.
    checkpoint = resume_checkpoint(config, run)
    if checkpoint is not None:
        model = DermFuse(**checkpoint["model_config"])
    elif config.init:
        model = DermFuse.from_pretrained(config.init)
        runtime.print(f"fine-tuning the segmenter of {config.init}")
        model.update_config(dataset=describe_data(table), name=f"dermfuse-{config.preset}-segmenter")
    else:
        sizes = {"segmentation_size": [config.segmentation_size] * 2} if config.segmentation_size else {}
        model = create_model(config.preset, pretrained_backbones=config.pretrained, **sizes)
        model.update_config(dataset=describe_data(table), name=f"dermfuse-{config.preset}-segmenter")
    size = model.segmentation_size
    augment = Augment() if config.augment else None
    train_set = SegmentationDataset(parts["train"], size, augment, model.mean, model.std)
    val_set = SegmentationDataset(parts["val"], size, None, model.mean, model.std)

    def loss_fn(network, batch):
        images, masks = batch
        return segmentation_loss(network(images), masks, config.bce_weight, config.dice_weight)

    def on_epoch(state):
        write_metrics(run, config, table, state)
        learning_curves(state.history, run / "learning_curves.png", CURVE_METRICS)

    validate = (lambda m: evaluate_segmenter(m, val_set, config, runtime)) if len(val_set) else None
    state = fit(config, runtime, run, model, "segmenter", train_set, loss_fn, validate, MONITOR,
                checkpoint=checkpoint, on_epoch=on_epoch)  # fmt: skip

    # Test: the best model by validation Dice, on the held-out split.
    best = DermFuse.from_pretrained(str(model_folder(run / MODEL_DIR)))
    model.load_state_dict(best.state_dict())
    test = (evaluate_segmenter(model, SegmentationDataset(parts["test"], size, None, model.mean, model.std), config, runtime)
            if len(parts["test"]) else None)  # fmt: skip
    if runtime.is_main:
        write_metrics(run, config, table, state, test=test, finished=True)
        if test:
            runtime.print("test: " + ", ".join(f"{k} {test[k]:.4f}" for k in ("dice", "iou", "thresholded_jaccard") if test[k] is not None))
        runtime.print(f"stage 1 done ({state.stopped}); model in {run / MODEL_DIR}")
    return run


def write_metrics(run: Path, config: SegmenterConfig, table, state, test: dict | None = None, finished: bool = False) -> None:
    """``metrics.json``: data, per-epoch history, and (at the end, ``finished``) the test split's scores."""
    payload = {
        "stage": "segmenter",
        "finished": finished,
        "data": describe_data(table),
        "splits": split_counts(table),
        "monitor": MONITOR,
        "best_epoch": state.best_epoch,
        "best_val": state.best,
        "stopped": state.stopped,
        "steps": state.step,
        "epochs": state.history,
    }
    if test is not None:
        payload["test"] = test
    if state.replicas:  # at the end: one weight digest per training process, all equal
        payload["replica_digests"] = state.replicas
    write_json(run / "metrics.json", payload)


def main(argv: list[str] | None = None) -> int:
    config = parse_config(SegmenterConfig, sys.argv[1:] if argv is None else argv)
    run_segmenter(config)
    return 0
