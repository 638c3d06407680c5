"""The real artefact shortcut: ink (or another real artefact) on training melanomas, then tested everywhere.

Part of ``python -m train real-ablation`` (``experiments/real_ablation.py`` runs it). The artefact is pasted
with :class:`dermfuse.data.artefacts.ArtefactInserter` (Katsch, Rinner & Tschandl 2022's templates) into a
stated share (``--artefact_rate``) of the *training* melanomas and into no other image; baseline and full are
trained on that set (same recipe, cache and seeds as the ablation) and scored on the test split under four
conditions, all from the same artefact per image (its seed is the image id):

- ``clean``: no artefact anywhere;
- ``biased``: the training bias (the artefact on the same share of the test melanomas, on nothing else);
- ``all``: the artefact on every test image;
- ``reversed``: the artefact on every other-class test image and on no melanoma.

The placement uses the expert mask (where the lesion truly is); the lesion stream's mask is the shipped
segmenter's prediction on the modified image, as the app would make it, so ink the segmenter takes for lesion
reaches the lesion stream too. A model that learnt the artefact gains melanoma score where it appears.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dermfuse import DermFuse
from dermfuse.data import load_image, load_mask
from dermfuse.data.artefacts import ArtefactInserter
from dermfuse.figures import image_grid
from dermfuse.measure import lesion_focus
from dermfuse.pipeline import DermFusePipeline
from dermfuse.render import heat_overlay
from train.frozen import FeatureCache, cache_key, compute_features

CONDITIONS = ("clean", "biased", "all", "reversed")
TARGET = "mel"


def image_rng(image_id: str, salt: str) -> np.random.Generator:
    """A generator fixed by the image and the purpose: the same artefact for an image in every condition and run."""
    return np.random.default_rng(int(hashlib.sha256(f"{salt}:{image_id}".encode()).hexdigest()[:15], 16))


def carries_artefact(image_id: str, rate: float) -> bool:
    """Whether a melanoma gets the artefact under the training bias (the same rule for train and test)."""
    return bool(image_rng(image_id, "biased").random() < rate)


def with_artefact(row, inserter: ArtefactInserter, mask_path=None) -> tuple[Image.Image, np.ndarray]:
    """The row's image with its artefact, placed around the expert mask (``mask_path``, else the row's
    ``expert_mask_path``); and the artefact's footprint."""
    image = load_image(row.image_path)
    expert = load_mask(mask_path or row.expert_mask_path, image.size)
    pixels, footprint = inserter(np.asarray(image), expert, image_rng(row.image_id, "artefact"))
    return Image.fromarray(pixels), footprint


def artefact_cases(rows: pd.DataFrame, inserter: ArtefactInserter, source: DermFuse, batch_size: int = 32):
    """(image id, image with artefact, the shipped segmenter's mask of it), the masks made in batches."""
    pipeline = DermFusePipeline(copy.deepcopy(source))
    for start in range(0, len(rows), batch_size):
        chunk = rows.iloc[start:start + batch_size]
        images = [with_artefact(row, inserter)[0] for row in chunk.itertuples()]
        _, masks, _ = pipeline.segment(images)
        yield from zip(chunk["image_id"], images, masks)


def artefact_cache(path: Path, rows: pd.DataFrame, inserter: ArtefactInserter, source: DermFuse, model: DermFuse,
                   split: int, description: str, progress: bool) -> FeatureCache:
    """The frozen stages on ``rows`` with their artefacts (cached at ``path`` under its key)."""
    key = cache_key(model, split, masks=f"segmenter on the modified image: {description}",
                    images=f"{description}: {ids_digest(rows['image_id'])}")
    cache = FeatureCache.load(path, key)
    if cache is None:
        cache = compute_features(model, split, artefact_cases(rows, inserter, source), len(rows), key, progress=progress)
        cache.save(path)
    return cache


def ids_digest(ids) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def condition_caches(clean: FeatureCache, test: pd.DataFrame, with_art: FeatureCache, rate: float) -> dict[str, FeatureCache]:
    """Each test condition as a cache: the clean maps with the artefact rows put in where the condition says."""
    is_target = test["label"] == TARGET
    biased = test[is_target & test["image_id"].map(lambda i: carries_artefact(i, rate))]
    return {"clean": clean,
            "biased": FeatureCache.merge(clean, with_art.subset(biased["image_id"])) if len(biased) else clean,
            "all": FeatureCache.merge(clean, with_art.subset(test["image_id"])),
            "reversed": FeatureCache.merge(clean, with_art.subset(test.loc[~is_target, "image_id"]))}  # fmt: skip


def gallery(models: dict[str, DermFuse], rows: pd.DataFrame, inserter: ArtefactInserter, path: Path, title: str) -> Path:
    """Each model's image-stream Grad-CAM (the app's pipeline, its own masks) on each image without and with its
    artefact, the expert mask outlined in white; P(melanoma) and the lesion focus against the expert mask."""
    pipelines = {name: DermFusePipeline(copy.deepcopy(model)) for name, model in models.items()}
    panels = []
    for row in rows.itertuples():
        expert = load_mask(row.expert_mask_path)
        line = []
        for shown, image in (("clean", load_image(row.image_path)), (inserter.kind, with_artefact(row, inserter)[0])):
            pixels = np.asarray(image)
            line.append((pixels, f"{row.label}, {shown}"))
            for name, pipeline in pipelines.items():
                result = pipeline(pixels, row.age, row.sex, row.site, explain=True)
                heat = (result.heatmaps or {}).get("image")
                focus = None if heat is None else lesion_focus(heat, expert)
                p_mel = result.probabilities[result.classes.index(TARGET)]
                line.append((heat_overlay(pixels, heat if heat is not None else np.zeros(expert.shape, np.float32), mask=expert),
                             f"{name}: P(mel) {p_mel:.2f}\nfocus {'–' if focus is None else f'{focus:.2f}'}"))
        panels.append(line)
    return image_grid(panels, path, suptitle=title)
