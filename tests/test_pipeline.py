"""The diagnosis pipeline on phantoms: shapes, probabilities, explanations, threads, fast path, OOD gate."""

from __future__ import annotations

import copy
import re
import threading

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from dermfuse import DermFuse, create_model
from dermfuse.data.io import ImageLoadError
from dermfuse.data.metadata import encode_metadata
from dermfuse.data.phantom import generate_phantom
from dermfuse.diagnosis import Diagnosis
from dermfuse import explain
from dermfuse.explain import FALLBACK_METHOD, PRIMARY_METHOD, explain_streams, head_cams, map_flaw, standard_gradcam
from dermfuse.lesion import lesion_box
from dermfuse.models.inference import SignBitReLU, fold_batchnorm, inference_copy
from dermfuse.ood import fit_ood, non_dermoscopy_images
from dermfuse.pipeline import Case, DermFusePipeline, bf16_supported
from dermfuse.sources import CHECKPOINTS, DEMO_MODEL
from dermfuse.ui import views
from dermfuse.vocab import HAM10000_CLASSES


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("tiny")


@pytest.fixture(scope="module")
def pipeline(model):
    return DermFusePipeline(model, fast=False)


@pytest.fixture(scope="module")
def phantoms():
    return [generate_phantom(label, seed=i, size=256) for i, label in enumerate(HAM10000_CLASSES)]


@pytest.mark.parametrize("shape", [(251, 333), (300, 500), (1999, 2999)])
def test_mask_matches_input_resolution(pipeline, phantoms, shape):
    image = cv2.resize(phantoms[4].image, (shape[1], shape[0]))
    result = pipeline(image, explain=True)
    assert result.mask.shape == result.mask_probability.shape == shape
    assert all(h.shape == shape for h in result.heatmaps.values())


def test_probabilities_are_distributions(pipeline, phantoms):
    for p in phantoms[:3]:
        result = pipeline(p.image, p.age, p.sex, p.site, explain=False)
        for values in (result.probabilities, result.probabilities_without_metadata):
            assert abs(sum(values) - 1) < 1e-5 and min(values) >= 0
        assert result.top_class == HAM10000_CLASSES[int(np.argmax(result.probabilities))]
        assert result.probabilities != result.probabilities_without_metadata


def test_explanations_on_the_known_mask(pipeline, phantoms):
    p = phantoms[4]
    result = pipeline(p.image, p.age, p.sex, p.site, mask=p.mask)
    assert np.array_equal(result.mask, p.mask)
    image_cam, lesion_cam = result.heatmaps["image"], result.heatmaps["lesion"]
    for cam in (image_cam, lesion_cam):
        assert cam.min() >= 0 and cam.max() <= 1 and cam.std() > 0.01
    assert not np.allclose(image_cam, lesion_cam, atol=0.05)
    assert all(0 <= v <= 1 for v in result.lesion_focus.values())
    # The lesion stream saw only the crop around the lesion: none of its heat lies outside the crop box.
    x0, y0, x1, y1 = lesion_box(p.mask, pipeline.model.lesion_margin)
    assert result.lesion_box == [x0, y0, x1, y1]
    outside = np.ones(p.mask.shape, bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert lesion_cam[outside].max() == 0 and lesion_cam[~outside].max() > 0


def test_head_gradcam_equals_standard_full_backward_gradcam(model, phantoms):
    """The cheap path computes the same maps as pytorch-grad-cam through the whole network."""
    pipeline = DermFusePipeline(model, fast=False)
    p = phantoms[1]
    image = Image.fromarray(p.image)
    lesion = pipeline.make_lesion_image(image, p.mask)
    meta = encode_metadata(p.age, p.sex, p.site)
    metadata = (meta["age"], meta["sex"], meta["site"])
    maps = pipeline.encode([image], [lesion])
    compared = 0
    for target in range(len(model.classes)):
        reference = standard_gradcam(model.classifier, pipeline._batch([image], model.image_size),
                                     pipeline._batch([lesion], model.image_size), metadata, target)
        cheap, _, _ = head_cams(model.classifier, *maps, metadata, model.image_size, targets=[target])
        for stream in ("image", "lesion"):
            assert np.abs(cheap[stream][0] - reference[stream]).max() < 1e-4, (target, stream)
            if reference[stream].std() > 0.01:  # (an all-negative CAM is zero after ReLU in both)
                assert np.corrcoef(cheap[stream].ravel(), reference[stream].ravel())[0, 1] > 0.999
                compared += 1
    assert compared >= len(model.classes)


@pytest.mark.parametrize("cam, flaw", [
    (np.zeros((5, 5)), "all zero"),
    (-np.ones((5, 5)), "all zero"),  # negative everywhere: zero after ReLU
    (np.full((5, 5), 0.3), "the same everywhere"),
    (np.where(np.eye(5) > 0, np.nan, 1.0), "not a finite number"),
    (np.where(np.eye(5) > 0, np.inf, 1.0), "not a finite number"),
    (np.arange(25.0).reshape(5, 5) - 12, None),
])
def test_map_flaw_names_each_kind_of_degenerate_map(cam, flaw):
    assert map_flaw(cam) == flaw if flaw is None else flaw in map_flaw(cam)


def test_a_degenerate_grad_cam_map_is_replaced_by_the_fallback_and_says_why(model, phantoms):
    """The untrained model has classes whose Grad-CAM is all zero (negative everywhere before ReLU): there the
    fallback method's map for the same class is shown, recorded, and explained in words."""
    pipeline = DermFusePipeline(model, fast=False)
    found = 0
    for p in phantoms:
        image = Image.fromarray(p.image)
        maps = pipeline.encode([image], [pipeline.make_lesion_image(image, p.mask)])
        meta = encode_metadata(p.age, p.sex, p.site)
        metadata = (meta["age"], meta["sex"], meta["site"])
        for target in range(len(model.classes)):
            plain, flaws, _ = head_cams(model.classifier, *maps, metadata, model.image_size, targets=[target])
            explained = explain_streams(model.classifier, *maps, metadata, model.image_size, targets=[target])
            for stream, flaw in flaws.items():
                if flaw[0] is None:
                    assert explained.methods[stream] == [PRIMARY_METHOD] and explained.notes[stream] == [None]
                    assert np.array_equal(explained.maps[stream], plain[stream])
                    continue
                found += 1
                assert plain[stream].max() == 0  # a flawed map is zero, never NaN
                assert explained.methods[stream] == [FALLBACK_METHOD]
                assert explained.maps[stream].max() > 0.9 and np.isfinite(explained.maps[stream]).all()
                assert "was all zero" in explained.notes[stream][0] and FALLBACK_METHOD in explained.notes[stream][0]
    assert found >= 3


def test_when_no_method_gives_a_map_none_is_drawn_and_the_words_say_why(pipeline, phantoms, monkeypatch):
    monkeypatch.setattr(explain, "map_flaw", lambda cam: "the same everywhere (no region stood out)")
    p = phantoms[4]
    result = pipeline(p.image, p.age, p.sex, p.site, mask=p.mask)
    assert result.heatmaps == {} and result.heatmap_methods == {} and result.lesion_focus == {}
    assert set(result.heatmap_notes) == {"image", "lesion"}
    assert all("No map can be shown" in note for note in result.heatmap_notes.values())
    shown = views.pictures(p.image, result)
    assert shown["heat_image"] is None and shown["heat_lesion"] is None
    lines = views.focus_lines(result)
    assert len(lines) == 2 and all(": no map. No map can be shown" in line for line in lines)
    assert not re.search(r"\bnan\b", views.reading(result) + result.to_json(), re.IGNORECASE)


def test_json_roundtrip(pipeline, phantoms):
    p = phantoms[2]
    result = pipeline(p.image, p.age, p.sex, p.site, attention=True)
    again = Diagnosis.from_json(result.to_json(arrays=True, scores_if_not_assessable=True))
    assert again.to_dict() == result.to_dict()
    for name in ("mask", "mask_probability", "lesion_image"):
        assert np.array_equal(getattr(again, name), getattr(result, name))
    for stream in result.heatmaps:
        assert np.array_equal(again.heatmaps[stream], result.heatmaps[stream])
    assert len(again.attention) == 4 and again.attention[0].shape == p.mask.shape
    summary = result.to_dict(scores_if_not_assessable=True)
    assert summary["top_class"] == result.top_class and "mask" not in summary


def test_an_image_that_is_not_assessable_has_reasons_and_no_scores_in_its_json(pipeline):
    result = pipeline(np.full((120, 160, 3), 255, np.uint8))
    assert not result.assessable and result.reasons[0].startswith("The image is blank")
    summary = result.to_dict()
    assert summary["scores_withheld"] and summary["top_class"] is None and summary["probabilities"] is None
    assert summary["reasons"] == result.reasons
    asked = result.to_dict(scores_if_not_assessable=True)
    assert not asked["scores_withheld"] and len(asked["probabilities"]) == len(result.classes)
    with pytest.raises(ValueError, match="without its scores"):
        Diagnosis.from_json(result.to_json(arrays=True))


def test_batch_equals_single_calls_and_explaining_keeps_the_scores(pipeline, phantoms):
    cases = [Case(p.image, p.age, p.sex, p.site) for p in phantoms[:3]]
    batch = pipeline.predict(cases, explain=True)
    for case, together in zip(cases, batch):
        alone = pipeline(case.image, case.age, case.sex, case.site, explain=False)
        assert np.allclose(together.probabilities, alone.probabilities, atol=1e-5)
        assert np.allclose(together.probabilities_without_metadata, alone.probabilities_without_metadata, atol=1e-5)
        assert np.array_equal(together.mask, alone.mask)


def test_a_batch_describes_each_image_as_its_own_call_does(pipeline, phantoms):
    # The per-image steps run on the pipeline's threads: each result must still be its own image's, in order.
    cases = [Case(p.image, p.age, p.sex, p.site, mask=p.mask) for p in phantoms[:5]]
    batch = pipeline.predict(cases)
    for case, together in zip(cases, batch):
        alone = pipeline.predict([case])[0]
        assert np.array_equal(together.lesion_image, alone.lesion_image)
        assert (together.abcd, together.measurements, together.skin_tone, together.lesion_box, together.reasons) == (
            alone.abcd, alone.measurements, alone.skin_tone, alone.lesion_box, alone.reasons)
    assert len({str(d.measurements) for d in batch}) == len(batch)  # five lesions, five descriptions


def test_an_error_in_one_image_s_step_reaches_the_caller(model, phantoms, monkeypatch):
    pipeline = DermFusePipeline(model, fast=False)
    make = pipeline.make_lesion_image

    def fails_on_the_third(pixels, mask):
        if np.array_equal(pixels, np.array(phantoms[2].image)):
            raise ValueError("the third image")
        return make(pixels, mask)

    monkeypatch.setattr(pipeline, "make_lesion_image", fails_on_the_third)
    with pytest.raises(ValueError, match="the third image"):
        pipeline.predict([Case(p.image) for p in phantoms[:4]])


def test_evaluation_leaves_out_the_descriptions_and_keeps_every_score(pipeline, phantoms):
    cases = [Case(p.image, p.age, p.sex, p.site, mask=p.mask) for p in phantoms[:3]]  # known masks: a lesion to describe
    described, scored = pipeline.predict(cases), pipeline.predict(cases, describe=False)
    for full, bare in zip(described, scored):
        assert full.abcd is not None and full.measurements is not None and full.skin_tone is not None
        assert bare.abcd is None and bare.measurements is None and bare.skin_tone is None
        assert bare.probabilities == full.probabilities
        assert bare.probabilities_without_metadata == full.probabilities_without_metadata
        assert np.array_equal(bare.mask, full.mask)
        assert (bare.assessable, bare.reasons, bare.ood_score) == (full.assessable, full.reasons, full.ood_score)


def test_concurrent_calls_match_sequential(pipeline, phantoms):
    cases = [(p.image, p.age, p.sex, p.site) for p in phantoms[:4]]
    sequential = [pipeline(*case).to_dict() for case in cases]
    results = [None] * len(cases)

    def work(i):
        results[i] = pipeline(*cases[i]).to_dict()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == sequential


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no bf16 support")
@pytest.mark.parametrize("known_mask", [True, False], ids=["known-mask", "segmented"])
def test_fast_path_agrees_with_fp32(phantoms, known_mask):
    # Trained weights (the demo model's): real batch-norm statistics for the fast path to fold.
    fp32 = DermFusePipeline(DermFuse.from_pretrained(str(CHECKPOINTS / DEMO_MODEL)), fast=False)
    fast = DermFusePipeline(DermFuse.from_pretrained(str(CHECKPOINTS / DEMO_MODEL)), fast=True)
    assert fast.fast
    cases = [Case(p.image, p.age, p.sex, p.site, mask=p.mask if known_mask else None) for p in phantoms]
    for a, b in zip(fp32.predict(cases), fast.predict(cases)):
        assert np.abs(np.array(a.probabilities) - np.array(b.probabilities)).max() <= 0.02
        margin = np.sort(a.probabilities)[-1] - np.sort(a.probabilities)[-2]
        assert a.top_class == b.top_class or margin < 0.02  # only a near-tie may flip


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_the_inference_copy_computes_what_the_networks_compute(preset):
    torch.manual_seed(0)
    model = create_model(preset).eval()
    for module in model.modules():  # trained-looking batch-norm statistics, so folding has work to do
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    segmenter = inference_copy(model.segmenter, dtype=torch.float32)
    encoder = inference_copy(model.classifier.image_encoder, dtype=torch.float32)
    assert not any(isinstance(m, torch.nn.ReLU) for m in encoder.modules())
    assert fold_batchnorm(copy.deepcopy(model.segmenter)) > 10 and fold_batchnorm(copy.deepcopy(model.classifier.image_encoder)) > 3
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(segmenter(x.contiguous(memory_format=torch.channels_last)), model.segmenter(x), atol=1e-3, rtol=1e-3)
        reference = model.classifier.image_encoder.forward_features(x)
        assert torch.allclose(encoder.forward_features(x.contiguous(memory_format=torch.channels_last)), reference, atol=1e-3, rtol=1e-3)


def test_sign_bit_relu_is_relu_bit_for_bit():
    x = torch.randn(4, 8, 5, 5).bfloat16()
    x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, float("inf")])
    assert torch.equal(SignBitReLU()(x), torch.relu(x)) and not torch.equal(x, torch.relu(x))  # not in place
    y = x.clone()
    SignBitReLU(inplace=True)(y)
    assert torch.equal(y, torch.relu(x))


def test_sign_bit_relu6_is_relu6_bit_for_bit():
    x = (torch.randn(4, 8, 5, 5) * 5).bfloat16()
    x[0, 0, 0, :5] = torch.tensor([0.0, -0.0, float("inf"), 6.0, 5.99])
    relu6 = torch.nn.functional.hardtanh(x, 0.0, 6.0)
    assert (x > 6).any() and (x < 0).any()
    assert torch.equal(SignBitReLU(upper=6.0)(x), relu6)
    assert torch.equal(SignBitReLU(upper=6.0)(x.float()), relu6.float())  # other dtypes: hardtanh itself


def test_metadata_and_image_errors(pipeline, phantoms, tmp_path):
    image = phantoms[0].image
    with pytest.raises(ValueError, match="impossible"):
        pipeline(image, age=-5)
    with pytest.raises(ValueError, match="impossible"):
        pipeline(image, age=300)
    with pytest.raises(ValueError, match="unknown lesion site"):
        pipeline(image, site="elbow pit")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.jpg"):
        pipeline(text)


@pytest.mark.parametrize("learned, used", [(None, ["age", "sex", "site"]), (["age"], ["age"]), ([], [])])
def test_the_model_is_given_only_the_metadata_it_learned_from(pipeline, phantoms, learned, used):
    p, given = phantoms[2], {"age": 60, "sex": "male", "site": "back"}
    pipeline.model.update_config(trained_metadata=learned)
    try:
        result = pipeline(p.image, **given, explain=False)
        alone = pipeline(p.image, **{f: v for f, v in given.items() if f in used}, explain=False)
    finally:
        pipeline.model.update_config(trained_metadata=None)
    assert result.metadata == {"age": 60.0, "sex": "male", "site": "posterior torso"}  # kept as given
    assert result.metadata_used == used
    assert result.model["metadata_fields"] == (["age", "sex", "site"] if learned is None else learned)
    np.testing.assert_allclose(result.probabilities, alone.probabilities, atol=1e-6)  # the others were unknown to it
    if not used:
        np.testing.assert_allclose(result.probabilities, result.probabilities_without_metadata, atol=1e-6)


def test_an_age_outside_the_training_images_is_given_as_the_nearer_end_with_a_caution(pipeline, phantoms):
    image, case = phantoms[2].image, {"sex": "male", "site": "back", "mask": phantoms[2].mask}  # the expert mask: assessable
    free = {age: pipeline(image, age=age, **case, explain=False) for age in (85, 95)}
    assert free[95].probabilities != free[85].probabilities  # no range recorded: 95 is given as it is
    pipeline.model.update_config(age_range=[20, 85])
    try:
        results = {age: pipeline(image, age=age, **case, explain=False) for age in (2, 20, 60, 85, 95)}
        blind = pipeline(image, age=95, **case, explain=False, use_metadata=False)
    finally:
        pipeline.model.update_config(age_range=None)
    np.testing.assert_allclose(results[95].probabilities, results[85].probabilities, atol=1e-6)
    np.testing.assert_allclose(results[2].probabilities, results[20].probabilities, atol=1e-6)
    np.testing.assert_allclose(results[60].probabilities, pipeline(image, age=60, **case, explain=False).probabilities, atol=1e-6)
    assert results[95].metadata["age"] == 95.0 and results[95].metadata_used == ["age", "sex", "site"]  # kept as given
    older = "Age 95 was given to the model as 85, the oldest age among its training images: it never learned from older patients."
    assert older in results[95].warnings
    assert "Age 2 was given to the model as 20, the youngest age among its training images" in " ".join(results[2].warnings)
    for plain in (results[20], results[60], results[85], blind):  # in range, or no metadata given at all
        assert not any(w.startswith("Age ") for w in plain.warnings)


def test_warnings(model, phantoms):
    pipeline = DermFusePipeline(model, fast=False)
    result = pipeline(phantoms[0].image, mask=np.zeros(phantoms[0].mask.shape, bool))
    assert any("No lesion found" in w for w in result.warnings)
    assert any("Untrained" in w for w in result.warnings)
    assert result.lesion_focus is None and result.measurements is None




def test_ood_gate_separates_phantoms_from_other_images(model):
    pipeline = DermFusePipeline(model, fast=False)
    train = [generate_phantom(HAM10000_CLASSES[i % 7], seed=100 + i, size=192).image for i in range(70)]
    model.update_config(ood=fit_ood(*pipeline.ood_inputs(train)))
    try:
        held_out = [generate_phantom(HAM10000_CLASSES[i % 7], seed=500 + i, size=192).image for i in range(28)]
        others = non_dermoscopy_images(28)
        scores = [r.ood_score for r in pipeline.predict([Case(img) for img in held_out + others])]
        auroc = roc_auc_score([0] * len(held_out) + [1] * len(others), scores)
        assert auroc >= 0.95, auroc
        noisy = pipeline(others[0], explain=False)
        assert any("unlike the training images" in w for w in noisy.warnings)
    finally:
        model.update_config(ood=None)


def test_blinding_the_lesion_stream_changes_scores_and_says_so(pipeline, phantoms):
    p = phantoms[3]
    normal = pipeline(p.image, p.age, p.sex, p.site, mask=p.mask)
    blind = pipeline(p.image, p.age, p.sex, p.site, mask=p.mask, lesion_stream=False)
    assert normal.probabilities != blind.probabilities
    assert set(blind.heatmaps) == {"image"} and any("blank image" in w for w in blind.warnings)
    assert np.array_equal(normal.mask, blind.mask)


def test_a_central_square_model_shows_the_image_stream_the_central_square(model, phantoms, monkeypatch):
    squares = DermFuse(**{**model.config, "image_framing": "central_square"})
    squares.load_state_dict(model.state_dict())
    whole, central = DermFusePipeline(model, fast=False), DermFusePipeline(squares, fast=False)
    square = phantoms[4].image  # 256×256: the framing changes nothing
    a, b = whole(square, explain=True), central(square, explain=True)
    assert a.probabilities == b.probabilities and np.array_equal(a.heatmaps["image"], b.heatmaps["image"])

    wide = cv2.resize(phantoms[4].image, (320, 240))  # 4:3: the image stream sees its central 240×240
    seen = []
    batch = DermFusePipeline._batch
    monkeypatch.setattr(DermFusePipeline, "_batch",
                        lambda self, images, size: seen.append([np.asarray(i).shape for i in images]) or batch(self, images, size))
    result = central(wide, explain=True)
    segmenter, image_stream, lesion_stream = seen
    assert segmenter == [(240, 320, 3)] and image_stream == [(240, 240, 3)]  # the segmenter still sees the whole frame
    heat = result.heatmaps["image"]
    assert heat.shape == (240, 320) and not heat[:, :40].any() and not heat[:, 280:].any() and heat[:, 40:280].any()
    assert result.probabilities != whole(wide).probabilities
    assert "central square" in result.heatmap_notes["image"] and "image" not in (b.heatmap_notes or {})
    with pytest.raises(ValueError, match="unknown image_framing 'letterbox': expected one of whole, central_square"):
        DermFuse(**{**model.config, "image_framing": "letterbox"})
