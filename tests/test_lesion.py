"""Mask clean-up and the lesion image."""

import numpy as np
import pytest

from dermfuse.lesion import clean_mask, lesion_box, lesion_image


def disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_clean_mask_keeps_largest_component_and_fills_holes():
    prob = np.zeros((100, 120))
    prob[disc(100, 120, 50, 60, 30)] = 0.9
    prob[disc(100, 120, 50, 60, 5)] = 0.1  # a hole
    prob[disc(100, 120, 10, 10, 4)] = 0.8  # a speck
    mask = clean_mask(prob)
    assert mask[50, 60] and not mask[10, 10]
    assert mask.sum() == disc(100, 120, 50, 60, 30).sum()


def test_clean_mask_empty():
    assert not clean_mask(np.zeros((10, 10))).any()


def test_lesion_box_square_with_margin():
    mask = np.zeros((200, 200), bool)
    mask[50:90, 60:140] = True  # 40 × 80
    x0, y0, x1, y1 = lesion_box(mask, margin=0.25)
    assert x1 - x0 == y1 - y0 == 120
    assert (x0 + x1) / 2 == 100 and (y0 + y1) / 2 == 70


@pytest.mark.parametrize("mode", ["crop_mask", "mask", "crop"])
def test_lesion_image_modes(mode):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    mask = disc(120, 160, 60, 80, 20)
    out = lesion_image(image, mask, mode=mode, margin=0.15, fill=(1, 2, 3))
    if mode == "mask":
        assert out.shape == image.shape
    else:
        assert out.shape[0] == out.shape[1] == round(41 * 1.3)
    blanked = (out == [1, 2, 3]).all(axis=-1).mean()
    assert (blanked > 0.3) if mode != "crop" else (blanked == 0)
    if mode != "crop":  # the lesion itself is untouched
        assert (out[out.shape[0] // 2, out.shape[1] // 2] != [1, 2, 3]).any()


def test_lesion_image_pads_at_the_border_and_falls_back_when_empty():
    image = np.full((50, 50, 3), 200, np.uint8)
    mask = np.zeros((50, 50), bool)
    assert np.array_equal(lesion_image(image, mask), image)
    mask[:20, :20] = True
    out = lesion_image(image, mask, fill=(0, 0, 0))
    assert out.shape[:2] == (26, 26)
    assert (out[0, 0] == 0).all() and (out[-5, -5] == 200).all()
