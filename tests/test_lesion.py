"""Mask clean-up and the lesion image."""

import numpy as np
import pytest

from dermfuse.lesion import clean_mask, lesion_box, lesion_crop_box, lesion_image, paste_into_frame


def disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


@pytest.mark.parametrize("speck", [True, False], ids=["two components", "one component"])
def test_clean_mask_keeps_largest_component_and_fills_holes(speck):
    prob = np.zeros((100, 120))
    prob[disc(100, 120, 50, 60, 30)] = 0.9
    prob[disc(100, 120, 50, 60, 5)] = 0.1  # a hole
    if speck:
        prob[disc(100, 120, 10, 10, 4)] = 0.8
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


def test_a_map_on_the_lesion_image_goes_back_to_where_that_image_was_cut_from():
    """A lesion near the corner: its box reaches outside the frame (padding). Pasting a map made on the lesion
    image puts each of its pixels back over the image pixel the lesion image took it from."""
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    mask = disc(90, 120, 12, 108, 10)
    box = lesion_crop_box(mask, "crop_mask", margin=0.3)
    x0, y0, x1, y1 = box
    assert box == lesion_box(mask, 0.3) and y0 < 0 and x1 > 120
    crop = lesion_image(image, mask, "crop", margin=0.3)
    values = crop[..., 0].astype(np.float32)  # a "map" that is the lesion image's red channel
    frame = paste_into_frame(values, box, mask.shape)
    inside = np.zeros(mask.shape, bool)
    inside[max(y0, 0):y1, max(x0, 0):x1] = True
    np.testing.assert_array_equal(frame[inside].reshape(y1 - max(y0, 0), -1), image[max(y0, 0):y1, max(x0, 0):x1, 0])
    assert (frame[~inside] == 0).all()


@pytest.mark.parametrize("mode, empty", [("mask", False), ("crop_mask", True)])
def test_a_lesion_image_that_is_the_whole_frame_has_no_box_and_its_map_is_resized(mode, empty):
    mask = np.zeros((60, 80), bool) if empty else disc(60, 80, 30, 40, 10)
    assert lesion_crop_box(mask, mode) is None
    assert paste_into_frame(np.ones((8, 8), np.float32), None, mask.shape).shape == (60, 80)
