"""Lesion segmenter: a Deep-UNet with Dual Attention Gates on the skips and ASPP at the bottom.

Encoder: any timm backbone with ``features_only=True`` and five levels (strides 2, 4, 8, 16, 32);
the paper preset uses ``efficientnet_b3``. Decoder: per level, upsample ×2, gate the skip with a
:class:`DualAttentionGate`, concatenate, two 3×3 conv-BN-ReLU. A 1×1 head gives one logit channel,
upsampled to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import create_backbone
from .layers import ASPP, ConvBNReLU, DualAttentionGate

STRIDE = 32
ENCODER_KWARGS = dict(features_only=True, out_indices=(0, 1, 2, 3, 4))


def check_segmentation_size(height: int, width: int) -> None:
    """Raise ``ValueError`` unless both sides are positive multiples of 32, naming the nearest valid size."""
    if height % STRIDE or width % STRIDE or height < STRIDE or width < STRIDE:
        nearest = tuple(max(STRIDE, STRIDE * round(side / STRIDE)) for side in (height, width))
        raise ValueError(
            f"segmenter input {height}×{width} is not a multiple of {STRIDE} on both sides: "
            f"resize to the nearest valid size {nearest[0]}×{nearest[1]}"
        )


class DecoderBlock(nn.Module):
    """Upsample ×2, gate the skip, concatenate, two conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.gate = DualAttentionGate(skip_channels, in_channels)
        self.convs = nn.Sequential(
            ConvBNReLU(in_channels + skip_channels, out_channels), ConvBNReLU(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        gated, alpha = self.gate(skip, x)
        return self.convs(torch.cat([x, gated], dim=1)), alpha


class LesionSegmenter(nn.Module):
    """Deep-UNet + Dual Attention Gates + ASPP. ``forward`` returns mask logits (B, 1, H, W)."""

    def __init__(
        self,
        encoder: str = "efficientnet_b3",
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32),
        aspp_channels: int = 256,
        aspp_rates: tuple[int, ...] = (2, 4, 6),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.encoder_name = encoder
        self.encoder = create_backbone(encoder, **ENCODER_KWARGS)
        reductions = self.encoder.feature_info.reduction()
        if reductions != [2, 4, 8, 16, 32]:
            raise ValueError(f"segmenter encoder {encoder!r} has feature strides {reductions}; need [2, 4, 8, 16, 32]")
        if len(decoder_channels) != 4:
            raise ValueError(f"decoder_channels needs 4 values (one per skip level), got {list(decoder_channels)}")
        channels = self.encoder.feature_info.channels()  # five levels, shallow → deep
        self.aspp = ASPP(channels[-1], aspp_channels, tuple(aspp_rates), dropout)
        blocks, in_channels = [], aspp_channels
        for skip_channels, out_channels in zip(reversed(channels[:-1]), decoder_channels):
            blocks.append(DecoderBlock(in_channels, skip_channels, out_channels))
            in_channels = out_channels
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(in_channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Mask logits (B, 1, H, W); with ``return_attention`` also the gates' α maps, deep → shallow."""
        check_segmentation_size(*x.shape[-2:])
        features = self.encoder(x)  # strides 2, 4, 8, 16, 32
        y = self.aspp(features[-1])  # (B, aspp, H/32, W/32)
        attention = []
        for block, skip in zip(self.decoder, reversed(features[:-1])):
            y, alpha = block(y, skip)
            attention.append(alpha)
        logits = F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, 1, H, W)
        return (logits, attention) if return_attention else logits
