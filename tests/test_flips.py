"""Flip averaging (``dermfuse/models/flips.py``): the views, the mean score, and the heatmaps of that score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermfuse import DermFuse, create_model
from dermfuse.data.metadata import encode_metadata
from dermfuse.data.phantom import generate_phantom
from dermfuse.explain import explain_streams, head_cams
from dermfuse.ood import fit_ood
from dermfuse.models.flips import check_flip_views, flipped_views, repeated, unflipped, view_mean
from dermfuse.pipeline import DermFusePipeline
from publish.card import model_card
from train.classifier import classify


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    one = create_model("tiny")
    images = [generate_phantom(label, seed=i, size=128).image for i, label in enumerate(["nv", "mel", "bkl"] * 4)]
    one.update_config(ood=fit_ood(*DermFusePipeline(one, fast=False).ood_inputs(images)))
    four = DermFuse(**{**one.config, "flip_views": 4})
    four.load_state_dict(one.state_dict())
    assert all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(DermFusePipeline(one, fast=False).ood_inputs(images),
                                                                      DermFusePipeline(four, fast=False).ood_inputs(images)))
    return one.eval(), four.eval()


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom("mel", seed=3, size=256)


def test_views_are_the_batch_then_its_flips_and_unflip_back():
    batch = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    views = flipped_views(batch, 4)  # (8, 3, 4, 5)
    assert torch.equal(views[:2], batch)
    assert torch.equal(views[2:4], batch.flip(-1)) and torch.equal(views[4:6], batch.flip(-2))
    assert torch.equal(views[6:], batch.flip(-2).flip(-1))
    assert torch.equal(view_mean(views, 4), (batch + batch.flip(-1) + batch.flip(-2) + batch.flip((-2, -1))) / 4)
    assert torch.equal(repeated(torch.tensor([7, 9]), 4), torch.tensor([7, 9] * 4))
    maps = views[:, 0].numpy()  # (8, 4, 5): each view's map in its own frame
    assert all(np.array_equal(view, batch[:, 0].numpy()) for view in unflipped(maps, 4))
    assert flipped_views(batch, 1) is batch and flipped_views(None, 4) is None


def test_eight_views_are_the_eight_orientations_of_the_square_and_turn_back():
    batch = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = flipped_views(batch, 8)  # (16, 3, 4, 4)
    assert torch.equal(views[:8], flipped_views(batch, 4))  # the four flips first, as a 4-view model sees them
    expected = [torch.rot90(batch, k, (-2, -1)) for k in range(4)] + [torch.rot90(batch, k, (-2, -1)).transpose(-2, -1)
                                                                     for k in range(4)]
    seen = {views[2 * v:2 * v + 2].numpy().tobytes() for v in range(8)}
    assert seen == {e.numpy().tobytes() for e in expected}  # every orientation once, quarter turns included
    assert all(np.array_equal(view, batch[:, 0].numpy()) for view in unflipped(views[:, 0].numpy(), 8))
    turned = torch.rot90(batch, 1, (-2, -1))  # a quarter turn only reorders the views: the mean is the same
    assert torch.allclose(view_mean(flipped_views(turned, 8), 8).sum(), view_mean(views, 8).sum())
    assert {flipped_views(turned, 8)[2 * v:2 * v + 2].numpy().tobytes() for v in range(8)} == seen


def test_eight_views_need_a_square_input():
    with pytest.raises(ValueError, match="needs a square image_size, got \\[160, 128\\]"):
        DermFuse(**{**create_model("tiny").config, "flip_views": 8, "image_size": [160, 128]})
    assert DermFuse(**{**create_model("tiny").config, "flip_views": 4, "image_size": [160, 128]}).flip_views == 4


@pytest.mark.parametrize("views", [0, 3, 16, "4"])
def test_a_view_count_other_than_1_2_4_8_is_refused_by_name(views):
    with pytest.raises(ValueError, match="flip_views must be one of 1, 2, 4, 8"):
        check_flip_views(views)
    with pytest.raises(ValueError, match="flip_views"):
        DermFuse(**{**create_model("tiny").config, "flip_views": views})


def test_the_pipeline_scores_the_mean_logits_of_the_four_views(models, phantom):
    one, four = models
    result = DermFusePipeline(four, fast=False)(phantom.image, phantom.age, phantom.sex, phantom.site, explain=False)
    pipeline = DermFusePipeline(one, fast=False)
    lesion = pipeline.make_lesion_image(phantom.image, result.mask)
    image, lesion = pipeline._batch([phantom.image], one.image_size), pipeline._batch([lesion], one.image_size)
    meta = encode_metadata(phantom.age, phantom.sex, phantom.site)
    with torch.no_grad():
        logits = torch.stack([one.classifier(image.flip(axes) if axes else image, lesion.flip(axes) if axes else lesion,
                                             meta["age"], meta["sex"], meta["site"])
                              for axes in ((), (-1,), (-2,), (-2, -1))]).mean(0)
    expected = torch.softmax(one.calibrate(logits), 1)[0].numpy()
    assert np.abs(np.array(result.probabilities) - expected).max() < 1e-5
    single = pipeline(phantom.image, phantom.age, phantom.sex, phantom.site, explain=False)
    assert np.abs(np.array(single.probabilities) - expected).max() > 1e-4  # one view alone scores otherwise
    # The gate and the OOD score look at the unflipped view, so they are the one-view model's.
    assert result.ood_score == pytest.approx(single.ood_score, rel=1e-4)


def test_explained_and_plain_diagnoses_give_the_same_mean_scores(models, phantom):
    pipeline = DermFusePipeline(models[1], fast=False)
    plain = pipeline(phantom.image, phantom.age, phantom.sex, phantom.site, explain=False)
    explained = pipeline(phantom.image, phantom.age, phantom.sex, phantom.site, explain=True)
    for field in ("probabilities", "probabilities_without_metadata"):
        assert np.abs(np.array(getattr(plain, field)) - np.array(getattr(explained, field))).max() < 1e-5
    assert {s: h.shape for s, h in explained.heatmaps.items()} == {s: phantom.image.shape[:2] for s in ("image", "lesion")}


@pytest.mark.parametrize("views", [2, 4, 8])
def test_the_heatmap_of_a_flipped_image_is_the_flipped_heatmap(models, phantom, views):
    """The views of a left-right flipped image are the original's views in another order, so its mean score is the
    same and its heatmaps are the original's flipped: each view's map is put back in the image's frame."""
    one = models[0]
    model = DermFuse(**{**one.config, "flip_views": views})
    model.load_state_dict(one.state_dict())
    pipeline = DermFusePipeline(model, fast=False)
    image = np.ascontiguousarray(phantom.image)
    lesion = pipeline.make_lesion_image(image, phantom.mask)
    meta = encode_metadata(phantom.age, phantom.sex, phantom.site)
    metadata = (meta["age"], meta["sex"], meta["site"])
    maps = pipeline.encode([image], [lesion])
    flipped_maps = pipeline.encode([image[:, ::-1].copy()], [lesion[:, ::-1].copy()])
    assert maps[0].shape[0] == views  # (V·B, C, h, w)
    compared = 0
    for target in range(len(model.classes)):  # the untrained model's map is degenerate for some classes: those are skipped
        cams, flaws, logits = head_cams(model.classifier, *maps, metadata, model.image_size, [target], views=views)
        flipped_cams, flipped_flaws, flipped_logits = head_cams(model.classifier, *flipped_maps, metadata, model.image_size,
                                                                [target], views=views)
        assert torch.allclose(logits, flipped_logits, atol=1e-5)
        for stream in ("image", "lesion"):
            if flaws[stream][0] is None and flipped_flaws[stream][0] is None:
                assert cams[stream].max() > 0.9
                assert np.abs(flipped_cams[stream][0] - cams[stream][0][:, ::-1]).max() < 1e-3, (target, stream)
                compared += 1
    assert compared >= 4
    # One view is not flip-equivariant: without the averaging the flipped image's map is another map.
    one_view = DermFusePipeline(one, fast=False)
    single = [head_cams(one.classifier, *one_view.encode([f], [g]), metadata, one.image_size, [target])[0]["lesion"][0]
              for f, g in ((image, lesion), (image[:, ::-1].copy(), lesion[:, ::-1].copy()))]
    assert np.abs(single[1] - single[0][:, ::-1]).max() > 1e-3


def test_with_eight_views_a_quarter_turn_keeps_the_score_and_turns_the_heatmap(models):
    """A quarter turn is one of the eight views, so an 8-view model's logits do not move and its maps turn with the
    image; four views (flips only) do not promise that. Both streams are shown an image at the networks' input size
    (a resize is not exactly rotation-equivariant)."""
    one = models[0]
    image = np.ascontiguousarray(generate_phantom("mel", seed=3, size=one.image_size[0]).image)
    metadata = tuple(encode_metadata(60, "male", "back")[k] for k in ("age", "sex", "site"))
    for views in (8, 4):
        model = DermFuse(**{**one.config, "flip_views": views})
        model.load_state_dict(one.state_dict())
        pipeline = DermFusePipeline(model, fast=False)
        turned = np.rot90(image).copy()
        maps, turned_maps = pipeline.encode([image], [image]), pipeline.encode([turned], [turned])
        compared = 0
        for target in range(len(model.classes)):  # the untrained model's map is degenerate for some classes: skipped
            cams, flaws, logits = head_cams(model.classifier, *maps, metadata, model.image_size, [target], views=views)
            turned_cams, turned_flaws, turned_logits = head_cams(model.classifier, *turned_maps, metadata,
                                                                 model.image_size, [target], views=views)
            if views == 4:
                assert (logits - turned_logits).abs().max() > 1e-3
                break
            assert torch.allclose(logits, turned_logits, atol=1e-5)
            for stream in ("image", "lesion"):
                if flaws[stream][0] is None and turned_flaws[stream][0] is None:
                    assert np.abs(turned_cams[stream][0] - np.rot90(cams[stream][0])).max() < 1e-3, (target, stream)
                    compared += 1
        assert views == 4 or compared >= 4


def test_the_fallback_map_is_made_from_the_same_views(models, phantom):
    """A case whose Grad-CAM is degenerate gets the fallback method's map of the same views and class."""
    pipeline = DermFusePipeline(models[1], fast=False)
    lesion = pipeline.make_lesion_image(phantom.image, phantom.mask)
    maps = pipeline.encode([phantom.image, phantom.image], [lesion, lesion])
    meta = encode_metadata([phantom.age] * 2, [phantom.sex] * 2, [phantom.site] * 2)
    metadata = (meta["age"], meta["sex"], meta["site"])
    for target in range(len(models[1].classes)):
        explained = explain_streams(models[1].classifier, *maps, metadata, models[1].image_size, [target, target], views=4)
        for stream, methods in explained.methods.items():
            assert methods[0] == methods[1]  # both cases are the same image: the same method and map
            assert np.array_equal(explained.maps[stream][0], explained.maps[stream][1])


def test_training_scores_validation_with_the_models_views(models):
    one = models[0]
    batch = {"image": torch.rand(2, 3, 64, 64), "lesion": torch.rand(2, 3, 64, 64),
             "age": torch.tensor([0.5, -1.0]), "sex": torch.tensor([1, 0]), "site": torch.tensor([2, 0])}
    with torch.no_grad():
        mean = torch.stack([one.classifier(batch["image"].flip(a) if a else batch["image"],
                                           batch["lesion"].flip(a) if a else batch["lesion"],
                                           batch["age"], batch["sex"], batch["site"]) for a in ((), (-1,))]).mean(0)
        assert torch.allclose(classify(one.classifier, batch, views=2), mean, atol=1e-5)
        assert torch.allclose(classify(one.classifier, batch), one.classifier(*batch.values()), atol=1e-6)


def test_the_reading_says_the_maps_are_of_one_orientation_unless_all_eight_are_averaged(models, phantom):
    from dermfuse.ui import views

    one = models[0]
    eight = DermFuse(**{**one.config, "flip_views": 8})
    eight.load_state_dict(one.state_dict())
    for model, said in ((one, True), (models[1], True), (eight, False)):
        result = DermFusePipeline(model, fast=False)(phantom.image, phantom.age, phantom.sex, phantom.site)
        assert result.model["flip_views"] == model.flip_views and result.heatmap_methods
        assert ("quite another map" in views.reading(result)) is said, model.flip_views
    result.model.pop("flip_views")  # a result saved before the field existed: a one-view model's
    assert "quite another map" in views.reading(result)


def test_the_model_card_says_the_classifier_averages_flips(models):
    assert "Flip averaging" in model_card(models[1].config, {}, {}) and "4 views" in model_card(models[1].config, {}, {})
    assert "Flip averaging" not in model_card(models[0].config, {}, {})
    assert "all eight orientations" in model_card({**models[1].config, "flip_views": 8}, {}, {})
