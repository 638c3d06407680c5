"""The out-of-distribution warning says what sets an image apart (``dermfuse/ood.py``'s ``largest_difference``)."""

from __future__ import annotations

import numpy as np
import pytest

from dermfuse.ood import CAPTURE_STATISTICS, capture_statistics, fit_ood, largest_difference, thumbnail
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL

from conftest import SHARED_DATA

VIGNETTED = SHARED_DATA / "isic_cc0" / "images" / "ISIC_0000004.jpg"  # CC0: a round field of view in a black frame


def skin(seed: int, size: int = 160) -> np.ndarray:
    """A skin-coloured frame with a brown blob and some noise, each drawn at random: no black, no white."""
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.float32)
    image[:] = (205, 160, 140) + rng.normal(0, 12, 3)
    yy, xx = np.mgrid[:size, :size]
    blob = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4 + rng.integers(-12, 12)) ** 2
    image[blob] = (120, 80, 60) + rng.normal(0, 15, 3)
    return np.clip(image + rng.normal(0, rng.uniform(3, 12), image.shape), 0, 240).astype(np.uint8)


@pytest.fixture(scope="module")
def config():
    images = [skin(seed) for seed in range(24)]
    capture = np.stack([capture_statistics(image) for image in images])
    deep = np.random.default_rng(0).normal(size=(len(images), 8))
    return fit_ood(deep, capture)


def test_every_capture_statistic_has_words():
    assert len(CAPTURE_STATISTICS) == len(capture_statistics(skin(0)))


def test_a_black_frame_is_named_with_its_share_here_and_in_training(config):
    framed = skin(99)
    yy, xx = np.mgrid[:160, :160]
    framed[(yy - 80) ** 2 + (xx - 80) ** 2 > 70 ** 2] = 0  # the dermatoscope's round field of view
    capture = capture_statistics(thumbnail(framed))
    words = largest_difference(config, 1.0, capture)
    assert "share of near-black pixels" in words and "field of view" in words
    assert f"{100 * capture[7]:.1f} % here, 0.0 % on average in the training images" in words


def test_glare_is_named_as_white_pixels(config):
    glare = skin(98)
    glare[:50, :70] = 255
    assert "blown-out white pixels" in largest_difference(config, 1.0, capture_statistics(thumbnail(glare)))


def test_when_the_encoder_features_differ_more_the_warning_says_so(config):
    words = largest_difference(config, 1e6, capture_statistics(skin(97)))
    assert "image encoder" in words and "not be a dermoscopy image" in words


@pytest.mark.skipif(not VIGNETTED.is_file(), reason=f"the CC0 original {VIGNETTED} is not there (../shared/data)")
@pytest.mark.skipif(not (CHECKPOINTS / DEFAULT_MODEL).is_dir(), reason=f"no {DEFAULT_MODEL} in {CHECKPOINTS}")
def test_the_shipped_model_names_the_black_frame_of_a_real_dermoscopy_image():
    """A real ISIC image in a black frame: the warning says it is the frame, not that it may not be dermoscopy."""
    result = DermFusePipeline.from_pretrained(str(CHECKPOINTS / DEFAULT_MODEL))(VIGNETTED, explain=False)
    assert result.assessable
    unlike = [w for w in result.warnings if "unlike the training images" in w]
    assert len(unlike) == 1 and "share of near-black pixels" in unlike[0]
    assert "not be a dermoscopy image" not in unlike[0]
