"""An inference copy of the networks for the fast path: batch norm folded, bf16 weights, channels-last.

Three changes, each a measured cost of bf16 autocast alone on this 2-core CPU (paper preset, batch
16, ``torch.profiler``), none changing what the network computes beyond bf16 rounding:
- In eval mode a batch norm that directly follows a convolution is an affine map of that
  convolution's output, so it folds into the convolution's weights and bias
  (``torch.nn.utils.fusion.fuse_conv_bn_eval``): one pass over the activations less, per layer.
- Convolution weights stored in bf16: autocast no longer casts every weight on every call (a sixth
  of the segmenter's time was these copies). Batch norms that stay (DenseNet's pre-activation
  ones) keep fp32 statistics: in bf16 they moved probabilities by up to 0.023, against 0.010.
- ReLU and ReLU6 on bf16 as an integer clamp of their bits (:class:`SignBitReLU`): PyTorch's bf16 ReLU
  kernel on this CPU took 3.5 ms where fp32 takes 1.5 ms and the clamp 0.85 ms (16×128×56×56), and
  DenseNet runs a ReLU after every batch norm: it was a quarter of the encoders' time. Its bf16 ReLU6
  (``hardtanh``, after every EfficientNet-Lite convolution) took 13.4 ms where the clamp takes 1.5 ms
  (16×96×80×80, one thread), and was a sixth of the small preset's encoder time.

Pairs are found among each module's children in registration order, which is their forward order
in the layers used here (timm's EfficientNet / MobileNetV3 blocks: ``conv_pw, bn1, conv_dw, bn2, …``;
timm's DenseNet layers: ``norm1, conv1, norm2, conv2``; our ``ConvBNReLU`` and attention gates). A
pre-activation norm (DenseNet's ``norm1``) follows no convolution and is left alone. timm's
``BatchNormAct2d`` keeps its dropout and activation after folding. ``tests/test_pipeline.py``
checks that the folded copy computes what the original does.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(network: nn.Module) -> int:
    """Fold each eval-mode BatchNorm2d that directly follows a Conv2d into it, in place; return how many."""
    folded = 0
    for parent in list(network.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats
                    and conv.out_channels == norm.num_features):  # fmt: skip
                continue
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
            # timm's BatchNormAct2d applies dropout and an activation after the affine map: keep those.
            after = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m is not None]
            setattr(parent, norm_name, nn.Sequential(*after) if after else nn.Identity())
            folded += 1
    return folded


class SignBitReLU(nn.Module):
    """ReLU (or ReLU6 with ``upper=6``) that, on bf16, clamps the int16 bit pattern instead of the values.

    A bf16 number is negative exactly when its sign bit (the int16 sign) is set, and +0 is all
    zero bits, so ``clamp_min(bits, 0)`` is ReLU, bit for bit. Among non-negative bf16 numbers the
    bit patterns, read as integers, are ordered as the numbers are, so a further ``clamp_max`` at the
    bits of ``upper`` is ReLU6. Other dtypes take ``torch.relu`` / ``hardtanh``.
    """

    def __init__(self, inplace: bool = False, upper: float | None = None):
        super().__init__()
        self.inplace, self.upper = inplace, upper
        self.upper_bits = None if upper is None else int(torch.tensor(upper, dtype=torch.bfloat16).view(torch.int16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.bfloat16:
            if self.upper is not None:
                return nn.functional.hardtanh(x, 0.0, self.upper, inplace=self.inplace)
            return torch.relu_(x) if self.inplace else torch.relu(x)
        out = x if self.inplace else x.clone()
        out.view(torch.int16).clamp_(0, self.upper_bits)
        return out


def replace_relu(network: nn.Module) -> int:
    """Swap every ``nn.ReLU`` and ``nn.ReLU6`` in ``network`` for a :class:`SignBitReLU` of the same
    ``inplace`` (and bound); return how many."""
    swapped = 0
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (nn.ReLU, nn.ReLU6):
                setattr(parent, name, SignBitReLU(child.inplace, 6.0 if type(child) is nn.ReLU6 else None))
                swapped += 1
    return swapped


def inference_copy(network: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """A frozen eval-mode copy of ``network``: batch norms folded, ReLUs swapped, convolutions in ``dtype``, channels-last."""
    fast = copy.deepcopy(network).eval().requires_grad_(False)
    fold_batchnorm(fast)
    replace_relu(fast)
    for module in fast.modules():  # convolutions only: batch-norm statistics keep fp32's precision
        if isinstance(module, nn.Conv2d):
            module.to(dtype=dtype)
    return fast.to(memory_format=torch.channels_last)
