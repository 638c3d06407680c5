"""Named model presets and the one factory, ``create_model(name, **overrides)``."""

from __future__ import annotations

import inspect

from ..constants import INCEPTION_MEAN, INCEPTION_STD
from .dermfuse import DermFuse

PRESETS: dict[str, dict] = {
    # The paper: DenseNet201 ×2 at 224, EfficientNet-B3 Deep-UNet at 256, d = 512.
    "paper": dict(
        segmenter_encoder="efficientnet_b3",
        segmenter_decoder_channels=[256, 128, 64, 32],
        segmenter_aspp_channels=256,
        segmenter_aspp_rates=[2, 4, 6],
        segmentation_size=[256, 256],
        classifier_encoder="densenet201",
        classifier_encoder_kwargs=None,
        image_size=[224, 224],
        embed_dim=512,
        num_heads=8,
    ),
    # Same code, small widths: trains on a 2-core CPU in minutes, weights well under 20 MB.
    # The classifier encoders are timm DenseNets (densenet201's code) with growth rate 12 and
    # blocks (2, 4, 6, 4) instead of 32 and (6, 12, 48, 32); the segmenter encoder is timm's
    # mobilenetv3_large_075 (EfficientNet-B3 cannot be narrowed through timm's arguments).
    # Sizes are smaller too: 160 for the classifier (5×5 tokens per stream), 160 for the segmenter.
    "tiny": dict(
        segmenter_encoder="mobilenetv3_large_075",
        segmenter_decoder_channels=[64, 32, 24, 16],
        segmenter_aspp_channels=64,
        segmenter_aspp_rates=[1, 2, 3],
        segmentation_size=[160, 160],
        classifier_encoder="densenet201",
        classifier_encoder_kwargs={"growth_rate": 12, "block_config": [2, 4, 6, 4]},
        image_size=[160, 160],
        embed_dim=96,
        num_heads=4,
        metadata_layers=2,
    ),
    # Real data on a CPU: the same architecture with ImageNet-initialised EfficientNet-Lite0 encoders
    # (offline, from the PyPI weight package: models/backbones.py), which take inputs in [-1, 1].
    # Three Lite0s (segmenter at 192, both streams at 160: 5×5 tokens); 12 M parameters. One training
    # step at batch 32 on this 2-core CPU (no AMX): segmenter 29 images/s fp32 (32 bf16), classifier
    # 24 fp32 (19 bf16), random inputs, one measurement each.
    "small": dict(
        segmenter_encoder="tf_efficientnet_lite0",
        segmenter_decoder_channels=[96, 48, 32, 16],
        segmenter_aspp_channels=96,
        segmenter_aspp_rates=[1, 2, 3],
        segmentation_size=[192, 192],
        classifier_encoder="tf_efficientnet_lite0",
        classifier_encoder_kwargs=None,
        image_size=[160, 160],
        embed_dim=128,
        num_heads=4,
        metadata_layers=2,
        metadata_dropout=0.5,  # each field unknown half the time: most users and ISIC test sets give none
        mean=list(INCEPTION_MEAN),
        std=list(INCEPTION_STD),
    ),
}


# The paper's ablation, as switches on the same model (design.md): each name → the options it sets.
VARIANTS: dict[str, dict] = {
    "baseline": dict(use_lesion_stream=False, use_metadata=False),  # one DenseNet on the image
    "lesion": dict(use_lesion_stream=True, use_metadata=False, fusion="cross_attention"),  # + lesion stream
    "metadata": dict(use_lesion_stream=False, use_metadata=True),  # + metadata, no lesion stream
    "full": dict(use_lesion_stream=True, use_metadata=True, fusion="cross_attention"),  # the paper's model
    "concat": dict(use_lesion_stream=True, use_metadata=True, fusion="concat"),  # full, pooled concatenation
}


def create_model(name: str, pretrained_backbones: bool = False, **overrides) -> DermFuse:
    """Build a ``DermFuse`` from a preset; keyword overrides replace preset values.

    ``pretrained_backbones=True`` initialises every encoder from timm's ImageNet weights, which
    needs network access and raises a clear error without it.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    valid = set(inspect.signature(DermFuse.__init__).parameters) - {"self"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown model options {unknown}: valid options are {', '.join(sorted(valid))}")
    model = DermFuse(**{**PRESETS[name], **overrides})
    if pretrained_backbones:
        model.load_imagenet_weights()
    return model
