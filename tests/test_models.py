"""The networks: shapes, gradients, ablation switches, presets and safe save/load, per preset."""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch

from dermfuse import vocab
from dermfuse.models import PRESETS, DermFuse, DualAttentionGate, LesionSegmenter, UnsafeCheckpointError, create_model

# Small inputs keep the paper preset affordable on a 2-core CPU.
SMALL = {name: dict(segmentation_size=[64, 96], image_size=[64, 64]) for name in PRESETS}


def metadata(batch: int, missing: bool = False):
    if missing:
        return (torch.full((batch,), float("nan")), torch.full((batch,), vocab.SEXES.index("unknown")),
                torch.full((batch,), vocab.SITES.index("unknown")))
    return torch.linspace(20, 80, batch), torch.arange(batch) % 2, torch.arange(batch) % len(vocab.SITES)


@pytest.fixture(scope="module", params=sorted(PRESETS))
def small_model(request):
    torch.manual_seed(0)
    return request.param, create_model(request.param, **SMALL[request.param])


def test_paper_encoders_are_densenet201_and_segmenter_is_efficientnet_b3():
    model = create_model("paper")
    reference = sum(p.numel() for p in timm.create_model("densenet201", num_classes=0).parameters())
    assert reference == 18_092_928
    for name, encoder in model.classifier.encoders().items():
        assert sum(p.numel() for p in encoder.parameters()) == reference, name
    assert model.classifier.image_encoder is not model.classifier.lesion_encoder
    assert model.segmenter.encoder_name == "efficientnet_b3"
    effnet = timm.create_model("efficientnet_b3", features_only=True, out_indices=(0, 1, 2, 3, 4))
    assert sum(p.numel() for p in model.segmenter.encoder.parameters()) == sum(p.numel() for p in effnet.parameters())


def test_forward_backward_finite(small_model):
    name, model = small_model
    model.train()
    b = 2
    seg_in = torch.randn(b, 3, *model.segmentation_size)
    logits, attention = model.segmenter(seg_in, return_attention=True)
    assert logits.shape == (b, 1, *model.segmentation_size)
    assert len(attention) == 4 and all(0 <= a.min() and a.max() <= 1 for a in attention)
    image, lesion = torch.randn(b, 3, *model.image_size), torch.randn(b, 3, *model.image_size)
    out = model(image, lesion, *metadata(b))
    assert out.shape == (b, len(model.classes))
    (out.sum() + logits.mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(out).all()
    model.zero_grad(set_to_none=True)


def test_all_metadata_missing(small_model):
    _, model = small_model
    model.eval()
    image = torch.randn(3, 3, *model.image_size)
    with torch.no_grad():
        known = model(image, image, *metadata(3))
        unknown = model(image, image, *metadata(3, missing=True))
    assert torch.isfinite(unknown).all()
    assert not torch.allclose(known, unknown), "metadata has no effect on the logits"


def test_head_runs_alone_on_given_maps(small_model):
    _, model = small_model
    model.eval()
    image = torch.randn(2, 3, *model.image_size)
    with torch.no_grad():
        maps = model.classifier.forward_features(image, image)
        assert all(m.shape[-2:] == tuple(s // 32 for s in model.image_size) for m in maps)
        assert torch.allclose(model.classifier.forward_head(*maps, *metadata(2)), model(image, image, *metadata(2)))


@pytest.mark.parametrize("switches, absent", [
    (dict(use_lesion_stream=False), {"lesion_encoder", "lesion_tokens", "fusion"}),
    (dict(use_metadata=False), {"metadata"}),
    (dict(use_lesion_stream=False, use_metadata=False), {"lesion_encoder", "lesion_tokens", "fusion", "metadata"}),
    (dict(fusion="concat"), {"fusion.image_to_lesion", "fusion.lesion_to_image"}),
])
def test_ablation_switches_change_parameter_set(switches, absent):
    full = {n for n, _ in create_model("tiny").classifier.named_parameters()}
    ablated = {n for n, _ in create_model("tiny", **switches).classifier.named_parameters()}
    # Without the metadata transformer (whose output is layer-normed) the head gets its own LayerNorm.
    assert ablated - {"norm.weight", "norm.bias"} < full
    removed = {n for n in full - ablated}
    for prefix in absent:
        assert any(n.startswith(prefix + ".") for n in removed), prefix
        assert not any(n.startswith(prefix + ".") for n in ablated), prefix


def test_baseline_is_one_encoder_and_a_head():
    model = create_model("tiny", use_lesion_stream=False, use_metadata=False).eval()
    image = torch.randn(1, 3, *model.image_size)
    with torch.no_grad():
        assert model(image, None, *metadata(1)).shape == (1, 7)
    assert set(model.classifier.encoders()) == {"image"}


def test_save_load_roundtrip_exact(small_model, tmp_path):
    name, model = small_model
    model.eval()
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors"}
    loaded = DermFuse.from_pretrained(tmp_path)
    assert loaded.config == json.loads((tmp_path / "config.json").read_text())
    assert loaded.source["revision"].startswith("sha256:")
    torch.manual_seed(1)
    image = torch.randn(2, 3, *model.image_size)
    seg_in = torch.randn(1, 3, *model.segmentation_size)
    with torch.no_grad():
        assert torch.equal(model(image, image, *metadata(2)), loaded(image, image, *metadata(2)))
        assert torch.equal(model.segmenter(seg_in), loaded.segmenter(seg_in))


@pytest.mark.parametrize("options, fields", [
    ({}, ("age", "sex", "site")),  # a config from before training recorded it: all three
    (dict(trained_metadata=["site", "age"]), ("age", "site")),
    (dict(trained_metadata=[]), ()),  # trained on images without metadata (PH2)
    (dict(use_metadata=False), ()),  # no metadata transformer at all
])
def test_metadata_fields_are_those_the_model_learned_from(options, fields, tmp_path):
    model = create_model("tiny", **SMALL["tiny"], **options)
    assert model.metadata_fields == fields
    model.save_pretrained(tmp_path)
    assert DermFuse.from_pretrained(tmp_path).metadata_fields == fields


def test_trained_metadata_is_recorded_after_training_and_checked():
    model = create_model("tiny", **SMALL["tiny"])
    model.update_config(trained_metadata=["sex"])
    assert model.metadata_fields == ("sex",) and model.config["trained_metadata"] == ["sex"]
    with pytest.raises(ValueError, match="trained_metadata must name fields of age, sex, site"):
        model.update_config(trained_metadata=["weight"])


def test_the_training_ages_are_recorded_after_training_and_checked(tmp_path):
    model = create_model("tiny", **SMALL["tiny"])
    assert model.age_range is None  # unrecorded: ages are given as they are
    model.update_config(age_range=[5, 85])
    model.save_pretrained(tmp_path)
    assert DermFuse.from_pretrained(tmp_path).age_range == [5.0, 85.0]
    for bad in ([85, 5], [0, 130], [40]):
        with pytest.raises(ValueError, match=r"age_range must be \[youngest, oldest\] in years, 0 to 120"):
            model.update_config(age_range=bad)


def test_tiny_weights_at_most_20_mb(tmp_path):
    create_model("tiny").save_pretrained(tmp_path)
    size = (tmp_path / "model.safetensors").stat().st_size
    assert size <= 20 * 1024 * 1024, size


def test_pickle_checkpoint_refused(tmp_path):
    model = create_model("tiny", **SMALL["tiny"])
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="unpickling"):
        DermFuse.from_pretrained(tmp_path)


def test_unknown_config_key_refused(tmp_path):
    create_model("tiny", **SMALL["tiny"]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["run_this"] = "__import__('os').system('echo pwned')"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeCheckpointError, match="run_this"):
        DermFuse.from_pretrained(tmp_path)


def test_factory_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="paper, tiny"):
        create_model("huge")
    with pytest.raises(ValueError, match="embed_dim"):
        create_model("tiny", embed_dimension=3)
    with pytest.raises(ValueError, match="cross_attention, concat"):
        create_model("tiny", fusion="sum")
    with pytest.raises(ValueError, match="crop_mask"):
        create_model("tiny", lesion_mode="blur")


@pytest.mark.parametrize("size, nearest", [((250, 256), "256×256"), ((224, 300), "224×288"), ((20, 64), "32×64")])
def test_segmenter_rejects_sizes_not_multiple_of_32(size, nearest):
    segmenter = create_model("tiny").segmenter.eval()
    with pytest.raises(ValueError, match=nearest):
        segmenter(torch.zeros(1, 3, *size))


def test_segmenter_non_square():
    segmenter = create_model("tiny").segmenter.eval()
    with torch.no_grad():
        assert segmenter(torch.zeros(1, 3, 96, 160)).shape == (1, 1, 96, 160)


def test_dual_attention_gate_multiplies_spatial_and_channel_weights():
    gate = DualAttentionGate(skip_channels=4, gate_channels=6).eval()
    x, g = torch.rand(1, 4, 5, 5), torch.rand(1, 6, 5, 5)
    with torch.no_grad():
        out, alpha = gate(x, g)
    assert alpha.shape == (1, 1, 5, 5)
    ratio = out / (x * alpha)  # = β, constant over pixels within each channel
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()


@pytest.fixture
def offline(monkeypatch):
    """No network here anyway; offline mode makes the Hub client fail at once instead of retrying."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_pretrained_backbones_offline_fails_clearly(offline):
    from dermfuse.models.backbones import PretrainedWeightsUnavailable, create_backbone

    with pytest.raises(PretrainedWeightsUnavailable, match="network"):
        create_backbone("efficientnet_b3", pretrained=True, features_only=True)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_model("tiny", pretrained_backbones=True)


def test_hub_id_offline_fails_clearly(offline):
    with pytest.raises(OSError, match="Hugging Face Hub"):
        DermFuse.from_pretrained("someone/not-a-local-folder")


def test_model_checks_its_vocabulary():
    with pytest.raises(ValueError, match="unknown class labels"):
        create_model("tiny", classes=["mel", "tumour"])
    model = create_model("tiny", classes=["mel", "nv"], **SMALL["tiny"])
    assert model.classifier.classifier.out_features == 2
    assert not math.isnan(model.temperature)


def test_lesion_segmenter_is_usable_alone():
    segmenter = LesionSegmenter("mobilenetv3_large_075", (32, 16, 16, 8), 32, (1, 2, 3)).eval()
    with torch.no_grad():
        assert segmenter(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_update_config_reaches_saved_config(tmp_path):
    model = create_model("tiny", **SMALL["tiny"])
    model.update_config(temperature=1.7, dataset="phantom")
    model.save_pretrained(tmp_path)
    loaded = DermFuse.from_pretrained(tmp_path)
    assert loaded.temperature == 1.7 and loaded.dataset == "phantom"
    with pytest.raises(ValueError, match="cannot change"):
        model.update_config(embed_dim=3)
    with pytest.raises(ValueError, match="positive"):
        model.update_config(temperature=0)


def test_prior_shift_is_saved_and_applied_before_the_temperature(tmp_path):
    model = create_model("tiny", **SMALL["tiny"])
    shift = [0.5, -0.5] + [0.0] * (len(model.classes) - 2)
    model.update_config(temperature=2.0, prior_shift=shift)
    model.save_pretrained(tmp_path)
    loaded = DermFuse.from_pretrained(tmp_path)
    logits = torch.zeros(1, len(model.classes))
    assert loaded.calibrate(logits)[0, :2].tolist() == [0.25, -0.25]
    with pytest.raises(ValueError, match="one per class"):
        model.update_config(prior_shift=[1.0])
