"""Fusion of the image stream and the lesion stream."""

from __future__ import annotations

import torch
from torch import nn

FUSIONS = ("cross_attention", "concat")


class CrossAttentionBlock(nn.Module):
    """Queries attend to a context: post-LN residual attention, then a post-LN residual MLP."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, mlp_ratio: int = 2):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_ratio * dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(queries, context, context, need_weights=False)
        x = self.norm1(queries + attended)
        return self.norm2(x + self.mlp(x))


class StreamFusion(nn.Module):
    """Fuse image tokens and lesion tokens (B, N, d) into one vector (B, d).

    ``cross_attention`` (the paper's): image tokens query lesion tokens and lesion tokens query
    image tokens; each stream is mean-pooled and the concatenation projected to d *(ours)*.
    ``concat`` (the ablation): mean-pool each stream, concatenate, project — no interaction.
    """

    def __init__(self, dim: int, num_heads: int, fusion: str = "cross_attention", dropout: float = 0.0):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}: expected one of {', '.join(FUSIONS)}")
        self.fusion = fusion
        if fusion == "cross_attention":
            self.image_to_lesion = CrossAttentionBlock(dim, num_heads, dropout)
            self.lesion_to_image = CrossAttentionBlock(dim, num_heads, dropout)
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, image_tokens: torch.Tensor, lesion_tokens: torch.Tensor) -> torch.Tensor:
        if self.fusion == "cross_attention":
            image_tokens, lesion_tokens = (
                self.image_to_lesion(image_tokens, lesion_tokens),
                self.lesion_to_image(lesion_tokens, image_tokens),
            )
        pooled = torch.cat([image_tokens.mean(dim=1), lesion_tokens.mean(dim=1)], dim=-1)  # (B, 2d)
        return self.project(pooled)  # (B, d)
