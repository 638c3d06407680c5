"""The metadata transformer: patient age, sex and lesion site join the fused image vector."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

# Slots of the token sequence, in order.
SLOTS = ("cls", "fused", "age", "sex", "site")


class MetadataTransformer(nn.Module):
    """Pre-LN transformer over the tokens [CLS, FUSED, AGE, SEX, SITE]; returns the CLS output (B, d).

    AGE is ``Linear(age / 100)`` or, where the age is missing (NaN), a learned ``missing`` embedding.
    SEX and SITE are embeddings over their vocabularies, ``unknown`` included. Each slot gets a type
    embedding. In training each field is dropped to missing/unknown with probability
    ``field_dropout``, so missing metadata at inference is a trained case, not a surprise.
    """

    def __init__(
        self,
        dim: int,
        num_sexes: int,
        num_sites: int,
        unknown_sex: int,
        unknown_site: int,
        num_heads: int = 8,
        num_layers: int = 2,
        dropout: float = 0.1,
        field_dropout: float = 0.1,
    ):
        super().__init__()
        self.unknown_sex, self.unknown_site, self.field_dropout = unknown_sex, unknown_site, field_dropout
        self._dropping = True  # off within fields_as_given()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.age_embed = nn.Linear(1, dim)
        self.age_missing = nn.Parameter(torch.zeros(1, dim))
        self.sex_embed = nn.Embedding(num_sexes, dim)
        self.site_embed = nn.Embedding(num_sites, dim)
        self.slot_embed = nn.Parameter(torch.zeros(1, len(SLOTS), dim))
        for parameter in (self.cls_token, self.age_missing, self.slot_embed):
            nn.init.trunc_normal_(parameter, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, dim_feedforward=2 * dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def drop_fields(self, age, sex, site):
        """Each field of each case to missing / unknown with probability ``field_dropout``, as training does."""
        keep = lambda: torch.rand(age.shape[0], device=age.device) >= self.field_dropout  # noqa: E731
        age = torch.where(keep(), age, torch.full_like(age, float("nan")))
        sex = torch.where(keep(), sex, torch.full_like(sex, self.unknown_sex))
        site = torch.where(keep(), site, torch.full_like(site, self.unknown_site))
        return age, sex, site

    def forward(self, fused: torch.Tensor, age: torch.Tensor, sex: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        """fused (B, d); age (B,) float years, NaN = missing; sex, site (B,) long vocabulary indices."""
        if self.training and self.field_dropout > 0 and self._dropping:
            age, sex, site = self.drop_fields(age, sex, site)
        missing = torch.isnan(age)[:, None]  # (B, 1)
        age_value = torch.nan_to_num(age, nan=0.0)[:, None].to(fused.dtype) / 100.0
        age_token = torch.where(missing, self.age_missing.to(fused.dtype), self.age_embed(age_value))  # (B, d)
        tokens = torch.stack(
            [self.cls_token[:, 0].expand_as(fused), fused, age_token, self.sex_embed(sex), self.site_embed(site)], dim=1
        )  # (B, 5, d)
        tokens = self.encoder(tokens + self.slot_embed)
        return self.norm(tokens[:, 0])  # (B, d)

    @contextlib.contextmanager
    def fields_as_given(self):
        """Within it, training drops no field: for a caller that dropped them itself (:meth:`drop_fields`), alike
        for two views of one case."""
        self._dropping = False
        try:
            yield
        finally:
            self._dropping = True
