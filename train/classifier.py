"""Stage 2: fit the dual-stream classifier on lesion images made by the stage-1 segmenter, then calibrate.

    python -m train classifier --segmenter=runs/seg --out=runs/cls       # same data and split as stage 1
    python -m train classifier --segmenter=runs/seg --data=/data/HAM10000 --balance=focal

Reads top to bottom: configuration → the stage-1 model and the split → the model to train →
lesion masks predicted once and cached → training (``loop.fit``, early stopping on validation
balanced accuracy) → calibration fitted on the validation split (temperature scaling; with
``--calibration=prior`` after putting back part of the class prior that balancing took out) and
stored in the model's config → test evaluation → artefacts.

The masks are predicted by the stage-1 segmenter for every image (train, val and test) through
the pipeline the app uses (``DermFusePipeline.segment``: :func:`dermfuse.lesion.masks_from_logits`
at each image's size) and cached as PNGs in ``<run>/masks/`` (keyed by a digest of the segmenter's weights), so each epoch
only crops. Lesion images are then made by :func:`dermfuse.lesion.lesion_image_fn` with the model's
settings: the same function the app and the evaluation use. Training images are augmented together
with their predicted mask, so both streams see the same view.

Class imbalance (``--balance``): ``sampler`` draws every class equally often; ``weighted`` weights
the cross-entropy by inverse class frequency; ``focal`` uses the focal loss (γ = ``--focal_gamma``)
with the same weights; ``none`` does nothing.

The run folder holds ``train_config.json``, ``splits.csv``, ``masks/``, ``checkpoint.pt``,
``model/`` (best validation balanced accuracy, calibrated), ``metrics.json``, and the figures
``learning_curves.png``, ``confusion_matrix.png``, ``roc_curves.png``, ``reliability.png``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dermfuse import DermFuse
from dermfuse.data import Augment, ClassificationDataset, load_image
from dermfuse.data.colour_constancy import mean_light
from dermfuse.figures import confusion_matrix_figure, learning_curves, reliability_diagram, roc_curves
from dermfuse.lesion import lesion_image_fn
from dermfuse.metrics import (classification_metrics, expected_calibration_error, fit_prior_shift, fit_temperature,
                              negative_log_likelihood, softmax)
from dermfuse.models.flips import flipped_views, repeated, view_mean
from dermfuse.models.presets import VARIANTS
from dermfuse.ood import fit_ood, ood_score
from dermfuse.pipeline import DermFusePipeline
from train.checkpoint import MODEL_DIR, model_folder, save_model, write_json
from train.config import ClassifierConfig, parse_config
from train.data import MANIFEST, age_range, describe_data, known_metadata, prepare_table, require_data, split_counts
from train.loop import fit, format_metric
from train.order import Shard, make_loader
from train.run_folder import open_run, resume_checkpoint
from train.runtime import Runtime, gather, replica_digest, setup_runtime, teardown_runtime

MONITOR = "balanced_accuracy"
CURVE_METRICS = ("balanced_accuracy", "accuracy", "macro_auc")
MASK_DIR = "masks"


# --- the model --------------------------------------------------------------------------------


def find_segmenter(path: str) -> tuple[Path, Path | None]:
    """``--segmenter``: a stage-1 run folder (its ``model/``) or a saved DermFuse folder → (model folder, run folder)."""
    if not path:
        raise ValueError("stage 2 needs a stage-1 model: --segmenter=RUN_FOLDER (made by `python -m train segmenter`) "
                         "or a saved DermFuse folder")  # fmt: skip
    folder = Path(path)
    if (folder / MODEL_DIR).exists() or (folder / f".{MODEL_DIR}.old").exists():
        return model_folder(folder / MODEL_DIR), folder
    if (folder / "model.safetensors").is_file():
        return folder, None
    raise FileNotFoundError(f"--segmenter={path}: neither a stage-1 run folder (with model/) nor a saved DermFuse folder")


def build_model(source: DermFuse, classes: list[str], image_size: int = 0, variant: str = "",
                image_framing: str = "", flip_views: int = 0, white_balance=None) -> tuple[DermFuse, list[str]]:
    """A DermFuse with ``source``'s architecture for ``classes`` (and ``image_size``, ``image_framing``, ``flip_views``,
    ``white_balance``),
    holding every ``source`` weight whose shape still fits; returns it and the names of the freshly initialised ones.

    With ``variant`` (a name in ``VARIANTS``: the ablation), the classifier takes that variant's
    switches and starts fresh: only the segmenter's weights come from ``source``, so every variant
    and seed of an ablation starts from its own seeded initialisation, not from another's weights.
    Uncalibrated (temperature 1, no OOD threshold): the classifier is about to change.
    """
    config = {**source.config, **VARIANTS.get(variant, {}), "classes": list(classes), "temperature": 1.0, "ood": None}
    if image_size:
        config["image_size"] = [image_size, image_size]
    if image_framing:
        config["image_framing"] = image_framing
    if flip_views:
        config["flip_views"] = flip_views
    if white_balance is not None:
        config["white_balance"] = list(white_balance)
    model = DermFuse(**config)
    own, theirs = model.state_dict(), source.state_dict()
    kept = {name: tensor for name, tensor in theirs.items() if name in own and own[name].shape == tensor.shape
            and (not variant or name.startswith("segmenter."))}  # fmt: skip
    model.load_state_dict(kept, strict=False)
    return model, sorted(set(own) - set(kept))


# --- masks, predicted once --------------------------------------------------------------------


def cache_masks(model: DermFuse, table: pd.DataFrame, folder: Path, config: ClassifierConfig, runtime: Runtime) -> pd.DataFrame:
    """``table`` with ``mask_path`` pointing at the segmenter's cleaned masks, predicting those not cached yet.

    A cache made by other segmenter weights is discarded. Each process predicts its share; every
    mask is written atomically, so an interrupted run keeps the finished ones.
    """
    digest = replica_digest(model.segmenter)
    stamp = folder / "segmenter.sha256"
    if runtime.is_main:
        if folder.exists() and (not stamp.is_file() or stamp.read_text().strip() != digest):
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest + "\n")
    runtime.barrier()
    paths = [folder / f"{image_id}.png" for image_id in table["image_id"]]
    todo = [i for i, path in enumerate(paths) if not path.is_file()]
    if todo:
        runtime.print(f"predicting {len(todo)} lesion masks with the stage-1 segmenter (cached in {folder})")
        # The app's own path: the pipeline's segment (its fast copy where the app has one) and masks_from_logits.
        pipeline = DermFusePipeline(copy.deepcopy(model), device=runtime.device)
        mine = Shard(len(todo), runtime.rank, runtime.world_size).indices
        for start in range(0, len(mine), config.eval_batch_size):
            rows = [todo[i] for i in mine[start:start + config.eval_batch_size]]
            _, masks, _ = pipeline.segment([load_image(table["image_path"].iloc[row]) for row in rows])
            for mask, row in zip(masks, rows):  # (H, W) bool at the image's size, as the app makes it
                _write_png(paths[row], mask)
    runtime.barrier()
    return table.assign(mask_path=[str(path) for path in paths])


def _write_png(path: Path, mask: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    if not cv2.imwrite(str(tmp), mask.astype(np.uint8) * 255):
        raise OSError(f"could not write {tmp}")
    os.replace(tmp, path)


# --- loss and evaluation ----------------------------------------------------------------------


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """n / (K · n_k) per class (scikit-learn's "balanced"); 0 for a class absent from training."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, counts.sum() / (num_classes * counts), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float, weight: torch.Tensor | None = None,
               label_smoothing: float = 0.0) -> torch.Tensor:  # fmt: skip
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 − p_true)^γ, class-weighted, mean over the batch."""
    cross_entropy = F.cross_entropy(logits, target, weight=weight, reduction="none", label_smoothing=label_smoothing)
    p_true = torch.softmax(logits, dim=1).gather(1, target[:, None])[:, 0].detach().clamp(max=1.0)
    weighted = (1.0 - p_true) ** gamma * cross_entropy
    norm = weight[target].sum() if weight is not None else torch.tensor(float(len(target)), device=logits.device)
    return weighted.sum() / norm.clamp(min=1e-12)


def make_criterion(config: ClassifierConfig, train_labels: np.ndarray, num_classes: int, device):
    """The loss for ``--balance``: ``criterion(logits (B, K) float32, target (B,)) → scalar``."""
    weight = balanced_class_weights(train_labels, num_classes).to(device) if config.balance in ("weighted", "focal") else None
    if config.balance == "focal":
        return lambda logits, target: focal_loss(logits, target, config.focal_gamma, weight, config.label_smoothing)
    return lambda logits, target: F.cross_entropy(logits, target, weight=weight, label_smoothing=config.label_smoothing)


def classify(network, batch: dict, views: int = 1) -> torch.Tensor:
    """Logits (B, K) for a batch of :class:`ClassificationDataset` items; with ``views``, the mean over that many
    flipped views of each (``dermfuse/models/flips.py``, as the pipeline scores a model with ``flip_views``)."""
    metadata = (repeated(batch[k], views) for k in ("age", "sex", "site"))
    logits = network(flipped_views(batch["image"], views), flipped_views(batch.get("lesion"), views), *metadata)
    return logits if views == 1 else view_mean(logits.float(), views)  # the mean in fp32, also under autocast


def classify_with_twins(network, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits (B, K) of a batch and of its upload twins (``ClassificationDataset(twins=True)``), in one pass.

    The model drops metadata fields at random in training (``MetadataTransformer.field_dropout``). Here they are
    dropped once per case, alike for both of its views, so that the consistency loss asks for the same scores on
    the same information and does not teach the model to ignore the metadata."""
    classifier = getattr(network, "module", network)  # the DualStreamClassifier the loop trains, under DDP or not
    age, sex, site = batch["age"], batch["sex"], batch["site"]  # (B,) each
    as_given = contextlib.nullcontext()
    if classifier.use_metadata:
        age, sex, site = classifier.metadata.drop_fields(age, sex, site)
        as_given = classifier.metadata.fields_as_given()
    lesions = None if "lesion" not in batch else torch.cat([batch["lesion"], batch["lesion_twin"]])
    with as_given:
        both = network(torch.cat([batch["image"], batch["image_twin"]]), lesions, age.repeat(2), sex.repeat(2), site.repeat(2))
    return both.float().chunk(2)  # (B, K) each


def symmetric_kl(logits: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of (KL(p‖q) + KL(q‖p)) / 2 between the softmaxes of two (B, K) logits."""
    log_p, log_q = F.log_softmax(logits, dim=1), F.log_softmax(other, dim=1)
    return 0.5 * ((log_p.exp() * (log_p - log_q)).sum(1) + (log_q.exp() * (log_q - log_p)).sum(1)).mean()


@torch.no_grad()
def predict(model: DermFuse, dataset: ClassificationDataset, config: ClassifierConfig, runtime: Runtime) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated logits (N, K) and labels (N,) for the whole ``dataset``, sharded and gathered in order."""
    model.classifier.eval()
    shard = Shard(len(dataset), runtime.rank, runtime.world_size)
    logits = []
    for batch in make_loader(dataset, shard, config.eval_batch_size, config, runtime):
        with runtime.autocast():
            logits.append(classify(model.classifier, runtime.to_device(batch), model.flip_views).float().cpu())
    mine = torch.cat(logits).numpy() if logits else np.zeros((0, len(model.classes)), np.float32)
    order, all_logits = [], []
    for indices, part in gather((shard.indices, mine), runtime):
        order += indices
        all_logits.append(part)
    result = np.empty((len(dataset), len(model.classes)), np.float32)
    result[order] = np.concatenate(all_logits)
    return result, dataset.labels.numpy()


def evaluate_classifier(model, dataset, config, runtime) -> dict:
    """Validation metrics of the uncalibrated model (what early stopping watches), with ``loss`` = NLL."""
    logits, labels = predict(model, dataset, config, runtime)
    probabilities = softmax(logits)
    metrics = classification_metrics(labels, probabilities, model.classes, config.ece_bins)
    metrics["loss"] = negative_log_likelihood(labels, probabilities)
    return metrics


# --- the stage --------------------------------------------------------------------------------


def run_classifier(config: ClassifierConfig) -> Path:
    """Train stage 2 as ``config`` says; return the run folder."""
    runtime = setup_runtime(config)
    try:
        return _train(config, runtime)
    finally:
        teardown_runtime(runtime)


def _train(config: ClassifierConfig, runtime: Runtime) -> Path:
    segmenter_model, segmenter_run = find_segmenter(config.segmenter)
    reuse = segmenter_run / MANIFEST if segmenter_run and (segmenter_run / MANIFEST).is_file() else None
    require_data(config, reuse)
    run = open_run(config, runtime)

    # Data: labelled images, the stage-1 split unless told otherwise.
    table = prepare_table(config, runtime, run, reuse_manifest=reuse)
    labelled = table[table["label"].notna()]
    classes = [c.strip() for c in config.classes.split(",")] if config.classes else sorted(labelled["label"].unique())
    dropped = len(labelled) - int(labelled["label"].isin(classes).sum())
    labelled = labelled[labelled["label"].isin(classes)]
    if len(classes) < 2 or labelled.empty:
        raise ValueError(f"stage 2 needs labelled images of at least two classes; found {sorted(table['label'].dropna().unique())}")
    runtime.print(f"data: {describe_data(table)}; classes {classes}" + (f"; {dropped} images of other classes left out" if dropped else ""))

    # Model: the stage-1 model (its trained segmenter) with a classifier for these classes.
    checkpoint = resume_checkpoint(config, run)
    if checkpoint is not None:
        model = DermFuse(**checkpoint["model_config"])
        model.load_state_dict(checkpoint["model"])  # before the masks: the cache is keyed by these weights
    else:
        # --white_balance: the light every image is balanced to is the training split's mean (data/colour_constancy.py)
        light = (mean_light(load_image(path) for path in labelled.loc[labelled["split"] == "train", "image_path"])
                 if config.white_balance else None)  # fmt: skip
        model, fresh = build_model(DermFuse.from_pretrained(str(segmenter_model)), classes, config.image_size, config.variant,
                                   config.image_framing, config.flip_views, light)
        if config.pretrained:
            model.load_imagenet_weights(segmenter=False)
        fresh_text = f"the classifier ({len(fresh)} tensors)" if config.variant else ", ".join(fresh) or "nothing"
        runtime.print(f"model from {segmenter_model}; freshly initialised: {fresh_text}"
                      + (" (classifier encoders from ImageNet)" if config.pretrained else ""))
        # What it learned from: the data, which metadata fields its training images carried, and their ages.
        training = labelled[labelled["split"] == "train"]
        model.update_config(name=config.name or default_name(config, table), dataset=describe_data(labelled),
                            trained_metadata=known_metadata(training), age_range=age_range(training))
    if list(model.classes) != classes:
        raise ValueError(f"the run's model has classes {model.classes} but the data gives {classes}: pass --classes")

    # Lesion masks, predicted once; then the datasets.
    use_lesion = model.classifier.use_lesion_stream
    if use_lesion:
        labelled = cache_masks(model, labelled, run / MASK_DIR, config, runtime)
    make_lesion = lesion_image_fn(model.lesion_mode, model.lesion_margin, model.mean) if use_lesion else None
    parts = {split: labelled[labelled["split"] == split] for split in ("train", "val", "test")}
    if parts["val"].empty and (config.patience or not config.temperature):
        raise ValueError("the validation split is empty: it picks the best epoch and fits the temperature. Raise "
                         "--val_fraction, or train a fixed schedule with --patience=0 and a given --temperature=T")  # fmt: skip

    def dataset(split: str, augment: Augment | None = None, twins: bool = False) -> ClassificationDataset:
        return ClassificationDataset(parts[split], classes, model.image_size, make_lesion, augment, model.mean, model.std,
                                     model.image_framing, twins, model.white_balance)

    training_augment = (Augment(mask_jitter=config.mask_jitter, jpeg_probability=config.jpeg_probability,
                                colour_cast=config.colour_cast) if config.augment else None)
    train_set, val_set = dataset("train", training_augment, twins=config.consistency > 0), dataset("val")
    train_labels = train_set.labels.numpy()
    criterion = make_criterion(config, train_labels, len(classes), runtime.device)

    def loss_fn(network, batch):
        if not config.consistency:
            return criterion(classify(network, batch).float(), batch["label"])
        logits, twin_logits = classify_with_twins(network, batch)
        return criterion(logits, batch["label"]) + config.consistency * symmetric_kl(logits, twin_logits)

    def on_epoch(state):
        write_metrics(run, config, table, classes, state, segmenter_run)
        learning_curves(state.history, run / "learning_curves.png", CURVE_METRICS)

    state = fit(config, runtime, run, model, "classifier", train_set, loss_fn,
                (lambda m: evaluate_classifier(m, val_set, config, runtime)) if len(val_set) else None, MONITOR,
                checkpoint=checkpoint,
                balance_labels=train_labels if config.balance == "sampler" else None, on_epoch=on_epoch)  # fmt: skip

    # Calibrate the best model on the validation split: the temperature and, with --calibration=prior, first the
    # share of the training class prior put back (metrics.fit_prior_shift); both stored in its config.
    best = DermFuse.from_pretrained(str(model_folder(run / MODEL_DIR)))
    model.load_state_dict(best.state_dict())
    calibration = {"bins": config.ece_bins}
    shift = np.zeros(len(classes))
    if len(val_set):
        val_logits, val_labels = predict(model, val_set, config, runtime)
        if config.calibration == "prior":
            log_prior = np.log(np.bincount(train_labels, minlength=len(classes)) + 1.0)
            log_prior -= log_prior.mean()  # centred: a constant shift changes no softmax
            alpha, temperature = fit_prior_shift(val_logits, val_labels, log_prior, bins=config.ece_bins)
            shift = alpha * log_prior
            calibration["prior_shift"] = {"alpha": alpha, "log_prior": log_prior.tolist(), "tolerance": 0.005}
        else:
            temperature = config.temperature or fit_temperature(val_logits, val_labels)
        calibration.update(val_ece_before=expected_calibration_error(val_labels, softmax(val_logits), config.ece_bins),
                           val_ece_after=expected_calibration_error(val_labels, softmax(val_logits + shift, temperature), config.ece_bins))
    else:
        temperature = config.temperature
    calibration.update(temperature=temperature, fitted_on=config.temperature_from if config.temperature else "val")
    model.update_config(temperature=temperature, prior_shift=shift.tolist() if shift.any() else None)
    # The out-of-distribution gate: fitted on (a sample of) the training images, stored in the config.
    ood = None
    if config.ood_images:
        ood_pipeline = DermFusePipeline(copy.deepcopy(model), device=runtime.device)  # a copy: it switches gradients off
        ood = fit_ood_gate(ood_pipeline, parts["train"]["image_path"].tolist(), config)
    model.update_config(ood=ood)
    ood_check = {"fitted_on": "train", "images": min(len(parts["train"]), config.ood_images),
                 "threshold": ood["threshold"], "quantile": ood["quantile"]} if ood else None  # fmt: skip
    test = None
    if len(parts["test"]):
        test_logits, test_labels = predict(model, dataset("test"), config, runtime)
        before, after = softmax(test_logits), softmax(test_logits + shift, temperature)
        test = classification_metrics(test_labels, after, classes, config.ece_bins)
        calibration["test_ece_before"] = expected_calibration_error(test_labels, before, config.ece_bins)
        calibration["test_ece_after"] = test["ece"]
        if ood:
            test_scores = ood_score(ood, *ood_inputs(ood_pipeline, parts["test"]["image_path"].tolist(), config))
            ood_check["test_flagged"] = float((test_scores > ood["threshold"]).mean())
    calibration["ood"] = ood_check

    if runtime.is_main:
        save_model(model, run / MODEL_DIR)
        write_metrics(run, config, table, classes, state, segmenter_run, test=test, calibration=calibration, finished=True)
        if test is not None:
            confusion_matrix_figure(test["confusion_matrix"], classes, run / "confusion_matrix.png", "Confusion matrix (test)")
            roc_curves(test_labels, after, classes, run / "roc_curves.png", "One-vs-rest ROC (test)")
            reliability_diagram(test_labels, before, after, run / "reliability.png", config.ece_bins, temperature)
            runtime.print(f"test: balanced accuracy {test['balanced_accuracy']:.4f}, macro AUC {format_metric(test['macro_auc'])}, "
                          f"ECE {calibration['test_ece_before']:.4f} → {calibration['test_ece_after']:.4f} (T = {temperature:.3f}"
                          + (f", prior shift α = {calibration['prior_shift']['alpha']:.2f})" if "prior_shift" in calibration else ")"))  # fmt: skip
        runtime.print(f"stage 2 done ({state.stopped}); calibrated model in {run / MODEL_DIR}")
    runtime.barrier()
    return run


def ood_inputs(pipeline: DermFusePipeline, paths: list[str], config: ClassifierConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pooled image features and capture statistics of the images at ``paths``, through the pipeline the app uses."""
    parts = [pipeline.ood_inputs(paths[i:i + config.eval_batch_size]) for i in range(0, len(paths), config.eval_batch_size)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def fit_ood_gate(pipeline: DermFusePipeline, paths: list[str], config: ClassifierConfig) -> dict:
    """The OOD gate (``dermfuse.ood.fit_ood``) fitted on at most ``--ood_images`` of ``paths``, drawn with the run's seed."""
    if len(paths) > config.ood_images:
        chosen = np.random.default_rng(config.seed).choice(len(paths), config.ood_images, replace=False)
        paths = [paths[i] for i in sorted(chosen)]
    return fit_ood(*ood_inputs(pipeline, paths, config))


def default_name(config: ClassifierConfig, table: pd.DataFrame) -> str:
    """``dermfuse-<preset>-<data>``, e.g. ``dermfuse-tiny-phantom`` or ``dermfuse-paper-ham10000``."""
    data = "phantom" if describe_data(table).startswith("phantom") else "+".join(sorted(table["source"].dropna().unique()))
    return f"dermfuse-{config.preset}-{data}"


def write_metrics(run: Path, config: ClassifierConfig, table, classes, state, segmenter_run: Path | None,
                  test: dict | None = None, calibration: dict | None = None, finished: bool = False) -> None:  # fmt: skip
    """``metrics.json``: data, per-epoch history; at the end calibration, the test split, and stage 1's test scores."""
    payload = {
        "stage": "classifier",
        "finished": finished,
        "data": describe_data(table),
        "splits": split_counts(table),
        "classes": classes,
        "balance": config.balance,
        "monitor": MONITOR,
        "best_epoch": state.best_epoch,
        "best_val": state.best,
        "stopped": state.stopped,
        "steps": state.step,
        "epochs": state.history,
    }
    if calibration is not None:
        payload["calibration"] = calibration
    if test is not None:
        payload["test"] = test
    if segmenter_run is not None and (segmenter_run / "metrics.json").is_file():
        stage1 = json.loads((segmenter_run / "metrics.json").read_text(encoding="utf-8"))
        payload["segmenter"] = {"run": str(segmenter_run), "test": stage1.get("test"), "best_epoch": stage1.get("best_epoch")}
    if state.replicas:  # at the end: one weight digest per training process, all equal
        payload["replica_digests"] = state.replicas
    write_json(run / "metrics.json", payload)


def main(argv: list[str] | None = None) -> int:
    config = parse_config(ClassifierConfig, sys.argv[1:] if argv is None else argv)
    run_classifier(config)
    return 0
