"""Stage 2 with frozen early encoder stages: they run once per image into a feature cache; the rest trains on it.

Why: on a 2-core CPU (no AMX, fp32) a real-data ablation of 5 variants × 3 seeds cannot afford full passes
through two EfficientNet-Lite0s per image and epoch. Frozen at their ImageNet weights, the early stages
(stem + ``blocks[:frozen_stages]``) give the same maps in every epoch, variant and seed, so they are computed
once per image (fp16, in ``runs/``), and each run trains only ``blocks[frozen_stages:]``, the head convolution,
the stream tokens, the fusion, the metadata transformer and the linear head on the cached maps.

One code path with the rest of dermfuse: the model trained is a real ``DermFuse`` of the ``small`` preset (the
segmenter copied from the model whose masks are used, the classifier encoders from ImageNet), whose encoders'
own later modules are trained (:func:`dermfuse.models.backbones.encoder_stages` views them, it copies
nothing). Saved with ``save_pretrained``, it runs in ``DermFusePipeline`` unchanged: its encoders compute
``late(early(x))`` = ``forward_features(x)``; ``tests/test_frozen.py`` checks the pipeline's logits against
the cached path's. The cache is made from the images, masks and lesion images exactly as the pipeline makes
them (``to_tensor``, :func:`dermfuse.lesion.lesion_image_fn`); only the frozen part runs with its batch norms
folded, channels-last (``models/inference.py``'s ``fold_batchnorm``: the same function to float rounding).

Augmentation: a horizontal flip of both streams' cached maps (the same view for both); nothing else can be
applied to a cache. Class imbalance: the small recipe's weighted loss; metadata dropout: the model config's.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from dermfuse import DermFuse
from dermfuse.data import encode_metadata, to_tensor
from dermfuse.lesion import lesion_crop_box, lesion_image_fn
from dermfuse.metrics import classification_metrics, fit_prior_shift, negative_log_likelihood, softmax
from dermfuse.models.backbones import encoder_stages
from dermfuse.models.inference import fold_batchnorm
from train.checkpoint import CHECKPOINT, MODEL_DIR, model_folder, save_model, write_json
from train.classifier import MONITOR, build_model, make_criterion
from train.config import ClassifierConfig
from train.loop import fit
from train.run_folder import open_run, resume_checkpoint
from train.runtime import Runtime, replica_digest, setup_runtime, teardown_runtime

CACHE_VERSION = 1


@dataclass
class FrozenConfig(ClassifierConfig):
    """Stage 2 on cached maps: ``ClassifierConfig`` plus the number of frozen leading encoder stages."""

    frozen_stages: int = 6  # stem + blocks[:6] frozen at ImageNet weights and cached; blocks[6:], the head conv and the rest train
    eval_batch_size: int = 256


# --- the cache --------------------------------------------------------------------------------


@dataclass
class FeatureCache:
    """The frozen stages' output for a set of images: ``image`` / ``lesion`` (N, C, h, w) float16, the lesion
    image's box in each frame (N, 4; -1 where the lesion image is the whole frame), each frame's (height, width),
    and the ``key`` that says what made them (a cache is only reused under the same key)."""

    image_ids: list[str]
    image: torch.Tensor
    lesion: torch.Tensor
    boxes: torch.Tensor
    sizes: torch.Tensor
    key: dict

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"image_ids": self.image_ids, "image": self.image, "lesion": self.lesion, "boxes": self.boxes,
                    "sizes": self.sizes, "key": json.dumps(self.key, sort_keys=True)}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path, key: dict) -> "FeatureCache | None":
        """The cache at ``path`` if it was made under ``key``, else ``None``."""
        if not path.is_file():
            return None
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored["key"] != json.dumps(key, sort_keys=True):
            return None
        return cls(stored["image_ids"], stored["image"], stored["lesion"], stored["boxes"], stored["sizes"], key)

    def rows(self, image_ids: Iterable[str]) -> torch.Tensor:
        """Row indices of ``image_ids`` (every one must be cached)."""
        index = {image_id: i for i, image_id in enumerate(self.image_ids)}
        missing = [i for i in image_ids if i not in index]
        if missing:
            raise ValueError(f"{len(missing)} images are not in the feature cache (e.g. {missing[:3]}): rebuild it")
        return torch.tensor([index[i] for i in image_ids], dtype=torch.long)

    def subset(self, image_ids: Iterable[str]) -> "FeatureCache":
        """The rows of ``image_ids``, in that order."""
        rows = self.rows(list(image_ids))
        return FeatureCache([self.image_ids[i] for i in rows], self.image[rows], self.lesion[rows], self.boxes[rows],
                            self.sizes[rows], self.key)

    def box(self, row: int) -> tuple[int, int, int, int] | None:
        box = self.boxes[row].tolist()
        return None if box[0] == -1 and box[2] == -1 else tuple(box)

    @staticmethod
    def merge(base: "FeatureCache", override: "FeatureCache") -> "FeatureCache":
        """``base`` with the rows of ``override`` put in place of the same images (e.g. their artefact versions)."""
        rows = base.rows(override.image_ids)
        merged = FeatureCache(list(base.image_ids), base.image.clone(), base.lesion.clone(), base.boxes.clone(),
                              base.sizes.clone(), {"base": base.key, "override": override.key})
        for name in ("image", "lesion", "boxes", "sizes"):
            getattr(merged, name)[rows] = getattr(override, name)
        return merged


def early_digest(model: DermFuse, split: int) -> str:
    """Digest of the frozen early stages (both streams share them: the same ImageNet weights, never trained)."""
    digests = {replica_digest(encoder_stages(e, split)[0]) for e in model.classifier.encoders().values()}
    if len(digests) != 1:
        raise ValueError("the streams' early stages differ: frozen stages must be the ImageNet weights in both encoders")
    return digests.pop()


def cache_key(model: DermFuse, split: int, masks: str, images: str) -> dict:
    """What a cache depends on: the frozen weights, the preprocessing and lesion-image settings, the masks, the images."""
    return {"version": CACHE_VERSION, "encoder": model.classifier.encoder_name, "split": split,
            "early": early_digest(model, split), "image_size": list(model.image_size), "mean": list(model.mean),
            "std": list(model.std), "lesion_mode": model.lesion_mode, "lesion_margin": model.lesion_margin,
            "masks": masks, "images": images}  # fmt: skip


@torch.inference_mode()
def compute_features(model: DermFuse, split: int, cases: Iterable[tuple[str, Image.Image, np.ndarray]], count: int,
                     key: dict, batch_size: int = 32, progress: bool = True) -> FeatureCache:
    """Run the frozen stages on ``cases`` = (image id, RGB image, bool mask at its size): the image stream on the
    image, the lesion stream on the lesion image the pipeline makes from that mask."""
    early = copy.deepcopy(encoder_stages(model.classifier.image_encoder, split)[0]).eval()
    fold_batchnorm(early)
    early = early.to(memory_format=torch.channels_last)
    make_lesion = lesion_image_fn(model.lesion_mode, model.lesion_margin, model.mean)
    ids, image_maps, lesion_maps, boxes, sizes = [], [], [], [], []

    def run(images: list[Image.Image]) -> torch.Tensor:
        batch = torch.stack([to_tensor(image, model.image_size, model.mean, model.std) for image in images])
        return early(batch.contiguous(memory_format=torch.channels_last)).contiguous().half()  # (B, C, h, w)

    batch: list = []
    bar = tqdm(total=count, unit="image", desc="frozen stages", disable=not progress, mininterval=2.0)
    for case in itertools.chain(cases, [None]):  # lazily: a whole dataset of decoded images would not fit in memory
        if case is not None:
            batch.append(case)
        if batch and (case is None or len(batch) == batch_size):
            images = [image for _, image, _ in batch]
            image_maps.append(run(images))
            lesion_maps.append(run([make_lesion(image, mask) for _, image, mask in batch]))
            for image_id, image, mask in batch:
                box = lesion_crop_box(mask, model.lesion_mode, model.lesion_margin)
                ids.append(image_id)
                boxes.append([-1, -1, -1, -1] if box is None else list(box))
                sizes.append([image.height, image.width])
            bar.update(len(batch))
            batch = []
    bar.close()
    if not ids:
        raise ValueError("no images to cache")
    return FeatureCache(ids, torch.cat(image_maps), torch.cat(lesion_maps), torch.tensor(boxes), torch.tensor(sizes), key)


def late_maps(classifier, image_maps: torch.Tensor, lesion_maps: torch.Tensor | None, split: int):
    """The encoders' output maps from cached early maps: what ``forward_features`` returns, stream by stream."""
    encoders = classifier.encoders()
    image = encoder_stages(encoders["image"], split)[1](image_maps)
    lesion = encoder_stages(encoders["lesion"], split)[1](lesion_maps) if "lesion" in encoders else None
    return image, lesion


def cached_logits(classifier, batch: dict, split: int) -> torch.Tensor:
    """Logits (B, K) from a batch of :class:`CachedCases` items: the later stages, then the head."""
    image, lesion = late_maps(classifier, batch["image"], batch.get("lesion"), split)
    return classifier.forward_head(image, lesion, batch["age"], batch["sex"], batch["site"])


class CachedCases(Dataset):
    """One case per ``table`` row from the cache: ``image`` / ``lesion`` maps (float32; flipped left-right together
    with probability ½ when ``flip``), ``label`` (-1 when not one of ``classes``), ``age``, ``sex``, ``site`` as
    :func:`dermfuse.data.encode_metadata` makes them (``metadata=False``: all unknown)."""

    def __init__(self, cache: FeatureCache, table: pd.DataFrame, classes, flip: bool = False, metadata: bool = True):
        self.rows = cache.rows(table["image_id"])
        self.cache, self.flip = cache, flip
        self.labels = torch.tensor([classes.index(v) if v in classes else -1 for v in table["label"]], dtype=torch.long)
        n = len(table)
        self.metadata = (encode_metadata(table["age"].tolist(), table["sex"].tolist(), table["site"].tolist()) if metadata
                         else encode_metadata([None] * n, ["unknown"] * n, ["unknown"] * n))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        image, lesion = self.cache.image[row].float(), self.cache.lesion[row].float()
        if self.flip and torch.rand(()) < 0.5:
            image, lesion = image.flip(-1), lesion.flip(-1)
        return {"image": image, "lesion": lesion, "label": self.labels[index],
                **{k: self.metadata[k][index] for k in ("age", "sex", "site")}}


@torch.no_grad()
def predict_cached(classifier, dataset: CachedCases, split: int, batch_size: int = 256) -> np.ndarray:
    """Uncalibrated logits (N, K) of ``dataset``'s cases, in order."""
    classifier.eval()
    out = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
        out.append(cached_logits(classifier, batch, split).float())
    return torch.cat(out).numpy()


# --- the model --------------------------------------------------------------------------------


def frozen_model(source: DermFuse, classes: list[str], variant: str, split: int, seed: int) -> DermFuse:
    """A fresh ``variant`` classifier (seeded) with ImageNet encoders beside ``source``'s segmenter, early stages frozen."""
    torch.manual_seed(seed)
    model, _ = build_model(source, classes, variant=variant)
    model.load_imagenet_weights(segmenter=False)
    model.update_config(prior_shift=None, gate=None, ood=None)
    freeze_early(model, split)
    return model


def freeze_early(model: DermFuse, split: int) -> None:
    """Switch off the gradients of each encoder's early stages (the segmenter is never trained here either)."""
    model.segmenter.requires_grad_(False)
    for encoder in model.classifier.encoders().values():
        encoder_stages(encoder, split)[0].requires_grad_(False)


# --- one run ----------------------------------------------------------------------------------


def run_frozen_classifier(config: FrozenConfig, source: DermFuse, table: pd.DataFrame, cache: FeatureCache,
                          classes: list[str]) -> Path:
    """Train one variant on ``cache`` (rows of ``table`` with ``split`` train / val), calibrate it on val as the
    small recipe does (``--calibration=prior``), save it in ``<out>/model`` with ``metrics.json`` beside it (the
    experiment scores the test split itself). Resumes from ``<out>/checkpoint.pt`` with ``config.resume``."""
    runtime = setup_runtime(config)
    try:
        return _train(config, runtime, source, table, cache, classes)
    finally:
        teardown_runtime(runtime)


def _train(config: FrozenConfig, runtime: Runtime, source: DermFuse, table: pd.DataFrame, cache: FeatureCache,
           classes: list[str]) -> Path:
    run = open_run(config, runtime)
    split = config.frozen_stages
    checkpoint = resume_checkpoint(config, run)
    if checkpoint is not None:
        model = DermFuse(**checkpoint["model_config"])
        model.load_state_dict(checkpoint["model"])
        freeze_early(model, split)
    else:
        model = frozen_model(source, classes, config.variant, split, config.seed)
        model.update_config(name=config.name, dataset=f"ham10000 ({len(table)} images; early stages frozen at ImageNet)")
    train_rows, val_rows = table[table["split"] == "train"], table[table["split"] == "val"]
    train_set = CachedCases(cache, train_rows, classes, flip=config.augment)
    val_set = CachedCases(cache, val_rows, classes)
    train_labels = train_set.labels.numpy()
    criterion = make_criterion(config, train_labels, len(classes), runtime.device)

    def loss_fn(network, batch):
        return criterion(cached_logits(network, batch, split).float(), batch["label"])

    def evaluate(candidate: DermFuse) -> dict:
        logits = predict_cached(candidate.classifier, val_set, split, config.eval_batch_size)
        metrics = classification_metrics(val_set.labels.numpy(), softmax(logits), classes, config.ece_bins)
        return {**metrics, "loss": negative_log_likelihood(val_set.labels.numpy(), softmax(logits))}

    state = fit(config, runtime, run, model, "classifier", train_set, loss_fn, evaluate, MONITOR, checkpoint=checkpoint)

    # The best epoch, calibrated on val: part of the training prior put back, then the temperature.
    best = DermFuse.from_pretrained(str(model_folder(run / MODEL_DIR)))
    log_prior = np.log(np.bincount(train_labels, minlength=len(classes)) + 1.0)
    log_prior -= log_prior.mean()
    val_logits = predict_cached(best.classifier, val_set, split, config.eval_batch_size)
    alpha, temperature = fit_prior_shift(val_logits, val_set.labels.numpy(), log_prior, bins=config.ece_bins)
    best.update_config(temperature=temperature, prior_shift=(alpha * log_prior).tolist() if alpha else None)
    save_model(best, run / MODEL_DIR)
    write_json(run / "metrics.json", {
        "stage": "classifier", "finished": True, "variant": config.variant, "seed": config.seed,
        "frozen_stages": split, "classes": classes, "best_epoch": state.best_epoch, "best_val": state.best,
        "steps": state.step, "epochs": state.history, "calibration": {"alpha": alpha, "temperature": temperature},
    })  # fmt: skip
    (run / CHECKPOINT).unlink(missing_ok=True)  # finished: the model folder is all that is kept
    return run
