"""White balance by Shades of Gray (``dermfuse.data.colour_constancy``), and the models that ask for it: the light it
reaches, the casts it undoes, one path for training and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dermfuse import DermFuse
from dermfuse.data.colour_constancy import light_chromaticity, mean_light, white_balanced
from dermfuse.data.datasets import ClassificationDataset
from dermfuse.data.readers import read_image_folder
from dermfuse.data.transforms import channel_gains, to_tensor
from dermfuse.models.presets import create_model
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from dermfuse.ui.examples import EXAMPLES

REFERENCE = [0.40, 0.29, 0.31]
CASTS = {"warmer": (1.15, 1.0, 0.85), "cooler": (0.85, 1.0, 1.15), "greener": (0.9, 1.15, 0.9),
         "more magenta": (1.1, 0.85, 1.1)}  # as experiments/capture.py casts them


@pytest.fixture(scope="module")
def lesion() -> Image.Image:
    """A real dermoscopy image (a CC0 example), shrunk to the training images' 256-px scale."""
    return Image.open(EXAMPLES / "ISIC_0000049.jpg").convert("RGB").reduce(2)


def test_the_light_reaches_the_reference_and_a_cast_is_undone(lesion):
    balanced = np.asarray(white_balanced(lesion, REFERENCE), np.float64)
    assert np.allclose(light_chromaticity(balanced.astype(np.uint8)), REFERENCE, atol=0.01)
    assert not np.allclose(light_chromaticity(np.asarray(lesion)), REFERENCE, atol=0.01)  # it had something to do
    for name, gains in CASTS.items():  # a white balance set differently is a per-channel gain: balancing removes it,
        again = np.asarray(white_balanced(channel_gains(lesion, gains), REFERENCE), np.float64)  # up to brightness
        assert np.abs(again - again.mean() / balanced.mean() * balanced).mean() < 1.5, name


def test_an_image_or_its_pixels_give_the_same_pixels_back_as_they_came(lesion):
    as_image, as_pixels = white_balanced(lesion, REFERENCE), white_balanced(np.asarray(lesion), REFERENCE)
    assert isinstance(as_image, Image.Image) and as_image.size == lesion.size
    assert isinstance(as_pixels, np.ndarray) and as_pixels.dtype == np.uint8
    assert np.array_equal(np.asarray(as_image), as_pixels)


def test_a_large_image_is_balanced_as_its_small_copy_is(lesion):
    """The light of a large upload is estimated on every k-th row and column: the same light, a fraction of the time."""
    large = np.asarray(lesion.resize((lesion.width * 6, lesion.height * 6), Image.Resampling.NEAREST))
    assert large.shape[0] * large.shape[1] > 4 * (1 << 18)  # big enough to be subsampled
    assert np.allclose(light_chromaticity(large), light_chromaticity(np.asarray(lesion)), atol=0.003)


def test_a_black_image_is_left_as_it_is():
    black = np.zeros((20, 30, 3), np.uint8)
    assert white_balanced(black, REFERENCE) is black


def test_the_reference_is_the_mean_light_of_the_images(lesion):
    warmer = channel_gains(lesion, CASTS["warmer"])
    both = mean_light([lesion, warmer])
    expected = (light_chromaticity(np.asarray(lesion)) + light_chromaticity(np.asarray(warmer))) / 2
    assert np.allclose(both, expected) and sum(both) == pytest.approx(1)
    with pytest.raises(ValueError, match="at least one image"):
        mean_light([])


@pytest.mark.parametrize("bad", [[1, 2, 3], [0.5, 0.5], [0.5, 0.6, -0.1], [float("nan"), 0.5, 0.5]])
def test_a_model_refuses_a_reference_that_is_not_a_light(bad):
    with pytest.raises(ValueError, match="white_balance must be a light chromaticity"):
        create_model("tiny", white_balance=bad)


def test_a_model_keeps_its_reference_through_save_and_load(tmp_path):
    model = create_model("tiny", white_balance=REFERENCE)
    model.save_pretrained(tmp_path)
    assert DermFuse.from_pretrained(str(tmp_path)).white_balance == REFERENCE
    assert create_model("tiny").white_balance is None


def test_the_dataset_balances_both_streams_as_the_pipeline_does(tmp_path, save_image):
    (tmp_path / "labels.csv").write_text("image,label\nC0,nv\n")
    save_image(tmp_path / "images" / "C0.jpg", size=(40, 30), colour=(180, 100, 90))
    table = read_image_folder(tmp_path)
    seen = []
    lesion = lambda image, mask: seen.append(image) or image  # noqa: E731
    item = ClassificationDataset(table, ("mel", "nv"), 16, lesion_image_fn=lesion, white_balance=REFERENCE)[0]
    image = Image.open(table["image_path"][0]).convert("RGB")
    expected = white_balanced(image, REFERENCE)
    assert torch.equal(item["image"], to_tensor(expected, 16))
    assert np.array_equal(seen[0], np.asarray(expected))  # the lesion image is cut from the balanced view
    plain = ClassificationDataset(table, ("mel", "nv"), 16)[0]["image"]
    assert not torch.equal(plain, item["image"])


REAL = CHECKPOINTS / DEFAULT_MODEL


@pytest.mark.skipif(not (REAL / "config.json").is_file(), reason=f"{REAL} is not in this copy")
def test_a_model_that_balances_gives_a_cast_image_the_scores_of_the_image(lesion):
    """The shipped weights told to balance to the reference: the streams see balanced pixels, so a cast moves their
    scores by little, while the model that sees images as they are moves further. The segmenter sees the image as it is."""
    shipped = DermFuse.from_pretrained(str(REAL))
    balancing = DermFuse(**{**shipped.config, "white_balance": REFERENCE})
    balancing.load_state_dict(shipped.state_dict())
    as_they_are, balanced = DermFusePipeline(shipped, fast=False), DermFusePipeline(balancing, fast=False)
    images = [np.asarray(lesion)]
    assert balanced.classifier_view(images)[0][0].tolist() == white_balanced(images[0], REFERENCE).tolist()
    seen, fields = as_they_are.classifier_view(images)
    assert seen[0] is images[0] and fields == [None]  # no dark frame to fill in
    greener = channel_gains(lesion, CASTS["greener"])
    moved = {}
    for name, pipeline in (("as they are", as_they_are), ("balanced", balanced)):
        before, after = pipeline(lesion, explain=False), pipeline(greener, explain=False)
        moved[name] = np.abs(np.subtract(before.probabilities, after.probabilities)).max()
    assert moved["balanced"] < 0.05 and moved["balanced"] < moved["as they are"]
    result = balanced(lesion, explain=False)
    assert np.array_equal(result.image, np.asarray(lesion))  # what the user sent, shown as it is
    assert result.model["white_balance"] == REFERENCE
    assert as_they_are(lesion, explain=False).model["white_balance"] is None
    assert result.to_dict()["model"]["white_balance"] == REFERENCE  # predictions.json says how the streams saw it
