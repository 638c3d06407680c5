"""Preprocessing and augmentation: exact shapes and values, image and mask stay aligned, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dermfuse.data.transforms import (IMAGENET_MEAN, Augment, image_view, jitter_mask, mask_to_tensor, to_image, to_tensor,
                                      upload_twin, view_box)


def _square_pair(width=120, height=90):
    """A black image with a white off-centre square, and the square's mask."""
    pixels = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), bool)
    mask[10:50, 20:70] = True
    pixels[mask] = 255
    return Image.fromarray(pixels), mask


def test_to_tensor_shape_and_normalisation():
    mean_colour = tuple(round(255 * m) for m in IMAGENET_MEAN)
    tensor = to_tensor(Image.new("RGB", (100, 60), mean_colour), (32, 48))
    assert tensor.shape == (3, 32, 48) and tensor.dtype == torch.float32
    assert tensor.abs().max() < 0.01  # the normalisation mean maps to zero
    white = to_tensor(Image.new("RGB", (10, 10), (255, 255, 255)), 8)
    assert white.shape == (3, 8, 8)
    assert torch.allclose(white[:, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))


@pytest.mark.parametrize("width, height, box", [(600, 450, (75, 0, 525, 450)), (450, 600, (0, 75, 450, 525)),
                                               (257, 192, (32, 0, 224, 192)), (256, 256, None)])
def test_the_central_square_is_the_middle_of_the_longer_side(width, height, box):
    assert view_box(width, height, "central_square") == box
    assert view_box(width, height, "whole") is None
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    view = image_view(pixels, "central_square")
    expected = pixels if box is None else pixels[box[1]:box[3], box[0]:box[2]]
    assert np.array_equal(view, expected) and view.shape[0] == view.shape[1]
    assert np.array_equal(np.asarray(image_view(Image.fromarray(pixels), "central_square")), expected)  # PIL alike
    assert np.array_equal(image_view(pixels[..., 0] > 128, "central_square"), expected[..., 0] > 128)  # and masks
    assert image_view(pixels, "whole") is pixels


def test_an_unknown_framing_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown image framing 'letterbox': expected one of whole, central_square"):
        view_box(600, 450, "letterbox")


def test_to_tensor_reads_pixel_arrays_as_it_reads_images():
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    from_image = to_tensor(Image.fromarray(pixels), (24, 40), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.equal(to_tensor(pixels, (24, 40), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), from_image)
    read_only = pixels.copy()
    read_only.flags.writeable = False
    assert torch.equal(to_tensor(read_only, (24, 40), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), from_image)
    with pytest.raises(ValueError, match="uint8 pixels"):
        to_tensor(pixels.astype(np.float32), 8)


def test_to_tensor_refuses_non_rgb():
    with pytest.raises(ValueError, match="load it with dermfuse.data.load_image"):
        to_tensor(Image.new("L", (10, 10)), 8)
    with pytest.raises(ValueError, match="size=.*positive int or"):
        to_tensor(Image.new("RGB", (10, 10)), (0, 8))


def test_mask_to_tensor_keeps_area_and_place():
    _, mask = _square_pair()
    tensor = mask_to_tensor(mask, (45, 60))  # half size
    assert tensor.shape == (1, 45, 60) and tensor.dtype == torch.float32
    assert set(tensor.unique().tolist()) <= {0.0, 1.0}
    assert tensor.sum() == pytest.approx(mask.sum() / 4, rel=0.05)
    assert tensor[0, 5:25, 10:35].all() and not tensor[0, 30:, :].any()


def test_to_image_inverts_to_tensor():
    image, _ = _square_pair()
    back = to_image(to_tensor(image, (90, 120)))
    assert np.abs(np.asarray(back, int) - np.asarray(image, int)).max() <= 1


@pytest.mark.parametrize("seed", range(12))
def test_augment_keeps_image_and_mask_aligned(seed):
    image, mask = _square_pair()
    augment = Augment(hair_probability=0.0)
    out_image, out_mask = augment(image, mask, rng=seed)
    assert out_mask.dtype == bool and out_mask.shape == (out_image.height, out_image.width)
    bright = np.asarray(out_image).mean(axis=2) > 100
    np.testing.assert_array_equal(bright, out_mask)
    assert 0.6 * 90 * 120 * 0.75 <= out_mask.size <= 90 * 120  # the crop covers 60–100 % of the area (aspect aside)


def test_augment_geometry_survives_preprocessing():
    image, mask = _square_pair()
    out_image, out_mask = Augment()(image, mask, rng=5)
    image_t, mask_t = to_tensor(out_image, 64), mask_to_tensor(out_mask, 64)
    bright = image_t.mean(dim=0) > 0.0  # white ≫ 0, black ≪ 0 after normalisation
    assert (bright == mask_t[0].bool()).float().mean() > 0.97  # only resampled border pixels may differ


def test_augment_is_reproducible():
    image, mask = _square_pair()
    augment = Augment(hair_probability=0.5)
    first = augment(image, mask, rng=7)
    again = augment(image, mask, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(np.asarray(first[0]), np.asarray(again[0]))
    np.testing.assert_array_equal(first[1], again[1])
    others = [augment(image, mask, rng=s)[1] for s in range(8, 14)]
    assert any(o.shape != first[1].shape or (o != first[1]).any() for o in others)
    torch.manual_seed(0)
    from_torch = augment(image, mask)
    torch.manual_seed(0)
    np.testing.assert_array_equal(np.asarray(augment(image, mask)[0]), np.asarray(from_torch[0]))
    generator = torch.Generator().manual_seed(3)
    assert augment(image, None, rng=generator)[1] is None


def test_hair_darkens_the_image_only():
    image = Image.new("RGB", (160, 120), (220, 180, 160))
    mask = np.zeros((120, 160), bool)
    mask[30:90, 40:120] = True
    plain_image, plain_mask = Augment(hair_probability=0.0)(image, mask, rng=11)
    hairy_image, hairy_mask = Augment(hair_probability=1.0)(image, mask, rng=11)
    np.testing.assert_array_equal(plain_mask, hairy_mask)
    darker = np.asarray(hairy_image, int).sum(axis=2) < np.asarray(plain_image, int).sum(axis=2) - 60
    assert 20 < darker.sum() < 0.3 * darker.size


def test_augment_without_jitter_only_moves_pixels():
    image, mask = _square_pair()
    augment = Augment(brightness=0, contrast=0, saturation=0, hue=0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out_image, out_mask = augment(image, mask, rng=1)
    assert sorted(np.asarray(out_image).ravel().tolist()) == sorted(np.asarray(image).ravel().tolist())
    assert out_mask.sum() == mask.sum()


@pytest.mark.parametrize(
    "options, message",
    [({"scale": (0.0, 1.0)}, "scale="), ({"brightness": 1.5}, "brightness="), ({"hue": 0.7}, "hue="),
     ({"mask_jitter": 0.6}, "mask_jitter="), ({"jpeg_probability": 1.5}, "jpeg_probability="),
     ({"jpeg_quality": (90, 80)}, "jpeg_quality="), ({"colour_cast": 0.5}, "colour_cast="), ({"colour_cast": -0.1}, "colour_cast=")],
)
def test_augment_refuses_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        Augment(**options)


def test_augment_refuses_misaligned_mask():
    image, mask = _square_pair()
    with pytest.raises(ValueError, match="differ in size"):
        Augment()(image, mask[:-1], rng=0)


def test_mask_jitter_moves_the_outline_within_its_bound():
    mask = np.zeros((200, 200), dtype=bool)
    mask[60:140, 50:130] = True  # an 80-pixel lesion
    areas, centres = [], []
    for seed in range(20):
        out = jitter_mask(mask, 0.1, np.random.default_rng(seed))
        ys, xs = np.nonzero(out)
        areas.append(out.sum())
        centres.append((ys.mean(), xs.mean()))
        assert abs(ys.mean() - 99.5) <= 8.5 and abs(xs.mean() - 89.5) <= 8.5  # shifted by at most 10 % of 80 px
        assert 60**2 <= out.sum() <= 100**2  # grown or shrunk by at most 8 px a side
    assert len(set(areas)) > 5 and len(set(centres)) > 5  # it does vary
    assert not jitter_mask(np.zeros((50, 50), dtype=bool), 0.1, np.random.default_rng(0)).any()


def test_augment_jitters_the_mask_only_when_asked():
    image, mask = _square_pair()
    fixed = Augment(brightness=0, contrast=0, saturation=0, hue=0, scale=(1.0, 1.0), ratio=(1.0, 1.0), flips=False, rotate90=False)
    assert np.array_equal(fixed(image, mask, rng=3)[1], mask)
    jittered = Augment(brightness=0, contrast=0, saturation=0, hue=0, scale=(1.0, 1.0), ratio=(1.0, 1.0), flips=False,
                       rotate90=False, mask_jitter=0.2)
    out_image, out_mask = jittered(image, mask, rng=3)
    assert np.array_equal(np.asarray(out_image), np.asarray(image)) and not np.array_equal(out_mask, mask)


def test_jpeg_saves_the_image_again_and_leaves_the_mask():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))  # noise: JPEG cannot keep it
    _, mask = _square_pair()
    still = dict(brightness=0, contrast=0, saturation=0, hue=0, scale=(1.0, 1.0), ratio=(1.0, 1.0), flips=False, rotate90=False)
    kept_image, kept_mask = Augment(**still, jpeg_probability=0.0)(image, mask, rng=5)
    saved_image, saved_mask = Augment(**still, jpeg_probability=1.0, jpeg_quality=(70, 70))(image, mask, rng=5)
    np.testing.assert_array_equal(np.asarray(kept_image), np.asarray(image))
    np.testing.assert_array_equal(saved_mask, kept_mask)
    change = np.abs(np.asarray(saved_image, int) - np.asarray(image, int))
    assert saved_image.size == image.size and saved_image.mode == "RGB"
    assert 5 < change.mean() < 80  # moved by the compression, still the same picture


def test_a_colour_cast_changes_the_channels_balance_not_the_brightness_and_only_when_asked():
    """Each channel's gain in 1 ± colour_cast, their mean 1: the image's light changes colour, not strength (up to
    clipping)."""
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(60, 190, (90, 120, 3), dtype=np.uint8))
    _, mask = _square_pair()
    still = dict(brightness=0, contrast=0, saturation=0, hue=0, scale=(1.0, 1.0), ratio=(1.0, 1.0), flips=False, rotate90=False)
    assert np.array_equal(np.asarray(Augment(**still)(image, mask, rng=4)[0]), np.asarray(image))
    before = np.asarray(image, np.float64).reshape(-1, 3).mean(axis=0)
    ratios = []
    for seed in range(10):
        cast, cast_mask = Augment(**still, colour_cast=0.15)(image, mask, rng=seed)
        after = np.asarray(cast, np.float64).reshape(-1, 3).mean(axis=0)
        gains = after / before
        assert np.all(np.abs(gains - 1) <= 0.15 / 0.85 + 0.01) and abs(after.mean() / before.mean() - 1) < 0.02
        np.testing.assert_array_equal(cast_mask, mask)
        ratios.append(gains[0] / gains[2])
    assert np.ptp(ratios) > 0.1  # the casts differ from image to image


def test_an_upload_twin_is_saved_once_more_with_its_mask_one_pixel_away():
    rng = np.random.default_rng(1)
    shading = np.linspace(40, 200, 120)[None, :, None] + rng.normal(0, 12, (90, 120, 3))  # skin-like: smooth, some grain
    image = Image.fromarray(np.clip(shading, 0, 255).astype(np.uint8))
    _, mask = _square_pair()
    twin, twin_mask = upload_twin(image, mask, rng=4)
    change = np.abs(np.asarray(twin, int) - np.asarray(image, int))
    assert twin.size == image.size and 0.5 < change.mean() < 10  # quality 90-95: the same picture, not the same pixels
    ys, xs = np.nonzero(mask)
    moved_ys, moved_xs = np.nonzero(twin_mask)
    assert twin_mask.sum() == mask.sum()
    assert abs(moved_ys.min() - ys.min()) + abs(moved_xs.min() - xs.min()) == 1  # one pixel, one direction
    again, again_mask = upload_twin(image, mask, rng=4)
    assert np.array_equal(np.asarray(again), np.asarray(twin)) and np.array_equal(again_mask, twin_mask)
    assert upload_twin(image, None, rng=4)[1] is None
