"""Small building blocks of the segmenter: conv-BN-ReLU, ASPP and the Dual Attention Gate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3×3 (or k×k, dilated) convolution, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling (DeepLabv3) on the deepest encoder map.

    A 1×1 branch, one 3×3 atrous branch per rate, and an image-pooling branch, concatenated and
    projected by a 1×1 convolution with dropout. The rates must suit the map: DeepLab's (6, 12, 18)
    assume ~33×33 maps; at 256×256 input the stride-32 map is 8×8, where (2, 4, 6) still see
    distinct neighbourhoods, so that is the default.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...] = (2, 4, 6), dropout: float = 0.1):
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, out_channels, kernel_size=1)]
            + [ConvBNReLU(in_channels, out_channels, kernel_size=3, dilation=r) for r in rates]
        )
        # No BatchNorm after global pooling: a 1×1 map with batch size 1 has no variance to normalise.
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            ConvBNReLU((len(rates) + 2) * out_channels, out_channels, kernel_size=1), nn.Dropout2d(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="nearest")
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DualAttentionGate(nn.Module):
    """Spatial × channel attention on a skip connection, both driven by the decoder's gating signal.

    The paper names the gate but does not define it; this is our definition (design.md):
    - spatial, additive as in Attention U-Net (Oktay et al. 2018): α = σ(ψ(ReLU(W_x·x + W_g·g))),
      one weight per pixel;
    - channel, squeeze-and-excitation over the pooled [x; g]: β = σ(MLP(GAP([x; g]))), one weight
      per skip channel;
    - output x ⊙ α ⊙ β.
    ``g`` is the decoder feature already upsampled to the skip's resolution. Returns the gated skip
    and α (B, 1, H, W), so the segmenter can show where it attended (returned, not stored on the
    module, so concurrent calls never see each other's maps).
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int | None = None, reduction: int = 4):
        super().__init__()
        inter = inter_channels or max(skip_channels // 2, 8)
        self.w_x = nn.Sequential(nn.Conv2d(skip_channels, inter, 1, bias=False), nn.BatchNorm2d(inter))
        self.w_g = nn.Sequential(nn.Conv2d(gate_channels, inter, 1, bias=False), nn.BatchNorm2d(inter))
        self.psi = nn.Conv2d(inter, 1, 1)
        hidden = max((skip_channels + gate_channels) // reduction, 8)
        self.channel_mlp = nn.Sequential(
            nn.Linear(skip_channels + gate_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, skip_channels)
        )

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = torch.sigmoid(self.psi(F.relu(self.w_x(x) + self.w_g(g))))  # (B, 1, H, W)
        pooled = torch.cat([x.mean(dim=(2, 3)), g.mean(dim=(2, 3))], dim=1)  # (B, Cx + Cg)
        beta = torch.sigmoid(self.channel_mlp(pooled))[:, :, None, None]  # (B, Cx, 1, 1)
        return x * alpha * beta, alpha
