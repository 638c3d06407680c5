"""timm backbones, with ImageNet weights that are asked for explicitly and never faked.

``pretrained=True`` downloads the weights through timm's Hugging Face Hub loader. Without network
that fails, and we say so plainly instead of continuing with random weights.
"""

from __future__ import annotations

import timm
from torch import nn


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be obtained."""


def create_backbone(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=..., **kwargs)`` with clear errors for bad names and no network."""
    if not timm.is_model(name):
        raise ValueError(f"unknown timm backbone {name!r}: see timm.list_models() for the valid names")
    custom_widths = sorted(kwargs.keys() & {"growth_rate", "block_config", "bn_size"})
    if pretrained and (custom_widths or not timm.list_pretrained(f"{name}.*")):
        raise ValueError(
            f"{name}{' with custom widths ' + str(custom_widths) if custom_widths else ''} has no ImageNet weights: "
            "use pretrained_backbones=False (the 'tiny' preset trains from scratch)"
        )
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as error:  # timm surfaces network failures as several exception types
        raise PretrainedWeightsUnavailable(
            f"could not load ImageNet weights for {name!r} from the Hugging Face Hub ({type(error).__name__}: {error}). "
            "This needs network access (or a filled HF cache). Connect and retry, or pass "
            "pretrained_backbones=False to train from random initialisation."
        ) from error


def load_imagenet_weights(encoder: nn.Module, name: str, **kwargs) -> None:
    """Copy timm's ImageNet weights for ``name`` (built with the same ``kwargs``) into ``encoder``."""
    encoder.load_state_dict(create_backbone(name, pretrained=True, **kwargs).state_dict())
