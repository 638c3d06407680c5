"""The dual-network classifier: two DenseNet encoders, cross-attention fusion, metadata transformer.

One class covers the paper's model, its ablations and the baseline:
- ``use_lesion_stream=False`` drops the second encoder and the fusion (image stream only);
- ``use_metadata=False`` drops the metadata transformer (the fused vector goes straight to the head);
- ``fusion="concat"`` replaces cross-attention with pooled concatenation.
With both switches off this is one DenseNet on the image plus a linear head: the baseline.

Like timm models it splits into ``forward_features`` (the encoders, the expensive part) and
``forward_head`` (everything after them), so explanations can run the head alone on given maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import create_backbone
from .fusion import StreamFusion
from .metadata import MetadataTransformer

ENCODER_STRIDE = 32


class StreamTokens(nn.Module):
    """Encoder map (B, C, h, w) → tokens (B, h·w, d): linear projection plus a learned position embedding."""

    def __init__(self, in_channels: int, dim: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = tuple(grid)
        self.project = nn.Linear(in_channels, dim)
        self.position = nn.Parameter(torch.zeros(1, dim, *self.grid))
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        position = self.position
        if maps.shape[-2:] != self.grid:  # another input size: resample the position grid
            position = F.interpolate(position, size=maps.shape[-2:], mode="bilinear", align_corners=False)
        tokens = self.project(maps.flatten(2).transpose(1, 2))  # (B, h·w, d)
        return tokens + position.flatten(2).transpose(1, 2).to(tokens.dtype)


class DualStreamClassifier(nn.Module):
    """Image encoder + lesion encoder → fusion → metadata transformer → linear head."""

    def __init__(
        self,
        num_classes: int,
        num_sexes: int,
        num_sites: int,
        unknown_sex: int,
        unknown_site: int,
        encoder: str = "densenet201",
        encoder_kwargs: dict | None = None,
        image_size: tuple[int, int] = (224, 224),
        embed_dim: int = 512,
        num_heads: int = 8,
        fusion: str = "cross_attention",
        use_lesion_stream: bool = True,
        use_metadata: bool = True,
        metadata_layers: int = 2,
        metadata_dropout: float = 0.1,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.use_lesion_stream, self.use_metadata = use_lesion_stream, use_metadata
        grid = tuple(side // ENCODER_STRIDE for side in image_size)
        self.encoder_name, self.encoder_kwargs = encoder, dict(num_classes=0, **(encoder_kwargs or {}))
        self.image_encoder = create_backbone(encoder, **self.encoder_kwargs)
        channels = self.image_encoder.num_features
        self.image_tokens = StreamTokens(channels, embed_dim, grid)
        # Identity taps at the head's entry: the layers Grad-CAM hooks when the head runs alone.
        self.image_tap = nn.Identity()
        if use_lesion_stream:
            self.lesion_encoder = create_backbone(encoder, **self.encoder_kwargs)
            self.lesion_tokens = StreamTokens(channels, embed_dim, grid)
            self.lesion_tap = nn.Identity()
            self.fusion = StreamFusion(embed_dim, num_heads, fusion, dropout=0.0)
        if use_metadata:
            self.metadata = MetadataTransformer(
                embed_dim, num_sexes, num_sites, unknown_sex, unknown_site, num_heads, metadata_layers,
                field_dropout=metadata_dropout,
            )
        else:
            self.norm = nn.LayerNorm(embed_dim)
        self.head_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, num_classes)

    def encoders(self) -> dict[str, nn.Module]:
        """The stream encoders by name (``image`` and, if used, ``lesion``)."""
        found = {"image": self.image_encoder}
        if self.use_lesion_stream:
            found["lesion"] = self.lesion_encoder
        return found

    def taps(self) -> dict[str, nn.Module]:
        """The Grad-CAM target layer of each stream when the head runs on given maps."""
        found = {"image": self.image_tap}
        if self.use_lesion_stream:
            found["lesion"] = self.lesion_tap
        return found

    def forward_features(self, image: torch.Tensor, lesion: torch.Tensor | None = None):
        """Encoder maps: image (B, C, h, w) and lesion (B, C, h, w) or ``None`` without a lesion stream."""
        image_maps = self.image_encoder.forward_features(image)  # (B, 1920, 7, 7) for densenet201 at 224
        if not self.use_lesion_stream:
            return image_maps, None
        if lesion is None:
            raise ValueError("this classifier has a lesion stream: pass the lesion image as well")
        return image_maps, self.lesion_encoder.forward_features(lesion)

    def forward_head(
        self,
        image_maps: torch.Tensor,
        lesion_maps: torch.Tensor | None,
        age: torch.Tensor,
        sex: torch.Tensor,
        site: torch.Tensor,
        pre_logits: bool = False,
    ) -> torch.Tensor:
        """Logits (B, classes) from encoder maps and metadata (age NaN = missing; sex/site indices)."""
        tokens = self.image_tokens(self.image_tap(image_maps))  # (B, h·w, d)
        if self.use_lesion_stream:
            lesion_tokens = self.lesion_tokens(self.lesion_tap(lesion_maps))  # (B, h·w, d)
            fused = self.fusion(tokens, lesion_tokens)  # (B, d)
        else:
            fused = tokens.mean(dim=1)  # (B, d)
        x = self.metadata(fused, age, sex, site) if self.use_metadata else self.norm(fused)
        x = self.head_dropout(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, image, lesion, age, sex, site) -> torch.Tensor:
        return self.forward_head(*self.forward_features(image, lesion), age, sex, site)
