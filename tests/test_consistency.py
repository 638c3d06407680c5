"""Training with upload twins (``--consistency``): the pair's loss and how the metadata are dropped for it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dermfuse import create_model
from train.classifier import classify_with_twins, symmetric_kl


def twin_batch(cases: int = 8, same_views: bool = True) -> dict:
    generator = torch.Generator().manual_seed(0)
    image, lesion = (torch.randn(cases, 3, 64, 64, generator=generator) for _ in range(2))
    twin = image if same_views else image + 0.5 * torch.randn(image.shape, generator=generator)
    return {"image": image, "lesion": lesion, "image_twin": twin, "lesion_twin": lesion,
            "age": torch.linspace(20, 80, cases), "sex": torch.arange(cases) % 2, "site": torch.arange(cases) % 5}


def test_both_views_of_a_case_lose_the_same_metadata_fields():
    torch.manual_seed(0)
    network = create_model("tiny").classifier.eval()  # what the loop trains; no dropout, batch statistics fixed:
    metadata = network.metadata
    metadata.training, metadata.field_dropout = True, 0.5  # the only randomness left is which fields are dropped
    batch = twin_batch()
    logits, twin_logits = classify_with_twins(network, batch)
    assert logits.shape == twin_logits.shape == (8, network.classifier.out_features) and logits.dtype == torch.float32
    assert torch.allclose(logits, twin_logits, atol=1e-5)  # same views, same fields dropped: same scores
    assert metadata._dropping  # and the model drops fields itself again afterwards

    twice = [torch.cat([batch[key]] * 2) for key in ("image", "lesion", "age", "sex", "site")]
    assert not torch.allclose(*network(*twice).chunk(2), atol=1e-5)  # dropped row by row, the copies would differ


def test_symmetric_kl_is_zero_for_equal_scores_and_symmetric():
    generator = torch.Generator().manual_seed(1)
    p, q = torch.randn(6, 7, generator=generator), torch.randn(6, 7, generator=generator)
    assert symmetric_kl(p, p).item() == 0.0
    assert symmetric_kl(p, q).item() > 0 and torch.isclose(symmetric_kl(p, q), symmetric_kl(q, p))
    expected = 0.5 * (F.kl_div(F.log_softmax(q, 1), F.log_softmax(p, 1), log_target=True, reduction="batchmean")
                      + F.kl_div(F.log_softmax(p, 1), F.log_softmax(q, 1), log_target=True, reduction="batchmean"))
    assert torch.isclose(symmetric_kl(p, q), expected)
