"""load_image / load_mask / load_image_and_mask: every awkward input loads right or fails with a clear message."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dermfuse.data.io import (MAX_PIXELS, ImageLoadError, jpeg_quality, load_image, load_image_and_mask, load_mask,
                              read_header)


def _jpeg_bytes(size=(64, 48), colour=(200, 100, 50), **options) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def _png_with_header_size(path, width, height):
    """A valid small PNG whose IHDR claims width×height (CRC fixed): a decompression bomb's header."""
    buffer = io.BytesIO()
    Image.new("1", (16, 16)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "pil", "array"])
def test_every_source_kind_gives_rgb(tmp_path, kind):
    path = tmp_path / "lesion.jpg"
    path.write_bytes(_jpeg_bytes())
    source = {
        "path": path,
        "str": str(path),
        "bytes": path.read_bytes(),
        "pil": Image.open(path),
        "array": np.full((48, 64, 3), (200, 100, 50), np.uint8),
    }[kind]
    image = load_image(source)
    assert image.mode == "RGB" and image.size == (64, 48)
    assert np.abs(np.asarray(image, np.int16)[24, 32] - (200, 100, 50)).max() <= 3


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg is empty \(0 bytes\)"):
        load_image(path)
    with pytest.raises(ImageLoadError, match="empty image data"):
        load_image(b"")


def test_text_named_jpg_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photograph\n")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg is not an image file PIL can read.*convert it to JPEG or PNG"):
        load_image(path)


@pytest.mark.parametrize("brand", [b"heic", b"mif1"])
def test_an_iphone_heic_photo_is_named_with_how_to_export_it(tmp_path, brand):
    head = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1heic"  # the ISO box that opens a HEIF file
    path = tmp_path / "IMG_0412.HEIC"
    path.write_bytes(head + bytes(200))
    for source in (path, path.read_bytes()):
        with pytest.raises(ImageLoadError, match=r"is a HEIC/HEIF photo \(an iPhone's default format\).*export it as JPEG"):
            load_image(source)
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))  # an MP4 video: the general message
    with pytest.raises(ImageLoadError, match="is not an image file PIL can read"):
        load_image(path)


def test_truncated_jpeg_fails_clearly(tmp_path):
    noisy = io.BytesIO()  # noise, so that half the file holds only half the scan
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(noisy, "JPEG")
    data = noisy.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.jpg could not be decoded .*truncated or corrupt"):
        load_image(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageLoadError, match=r"image file not found: .*nowhere\.jpg"):
        load_image(tmp_path / "nowhere.jpg")


def test_a_folder_is_not_taken_for_a_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match=r"is a folder, not an image file: give one image file"):
        load_image(tmp_path)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 32768, 65535]] * 8, dtype=np.uint16).repeat(4, axis=1)  # 8 × 16
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    image = np.asarray(load_image(path))
    assert image.shape == (8, 16, 3)
    np.testing.assert_array_equal(image[0, ::4, 0], [0, 4, 128, 255])  # 1000 → 4, not 255
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    np.testing.assert_array_equal(np.asarray(load_image(values))[0, ::4, 0], [0, 4, 128, 255])


def test_rgba_is_composited_on_white(tmp_path):
    pixels = np.zeros((10, 10, 4), np.uint8)
    pixels[:, :5] = (255, 0, 0, 255)  # opaque red
    pixels[:, 5:] = (255, 0, 0, 0)  # fully transparent
    pixels[0, 0] = (0, 0, 0, 128)  # half-transparent black
    path = tmp_path / "alpha.png"
    Image.fromarray(pixels, "RGBA").save(path)
    image = np.asarray(load_image(path))
    assert tuple(image[5, 2]) == (255, 0, 0)
    assert tuple(image[5, 7]) == (255, 255, 255)
    assert abs(int(image[0, 0, 0]) - 127) <= 1
    np.testing.assert_array_equal(np.asarray(load_image(pixels)), image)


def test_grayscale_becomes_rgb(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((12, 20), 77, np.uint8)).save(path)
    image = np.asarray(load_image(path))
    assert image.shape == (12, 20, 3) and (image == 77).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (32, 32), (255, 0, 0, 0)).save(path, "JPEG", quality=95)  # pure cyan ink
    assert Image.open(path).mode == "CMYK"
    red, green, blue = np.asarray(load_image(path))[16, 16].astype(int)
    assert red < 40 and green > 215 and blue > 215


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    pixels = np.asarray(load_image(path))
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[0, 9]) == (255, 255, 255)


def _rotated_pair(tmp_path, orientation=6):
    """A 60×40 stored JPEG with EXIF orientation and a plain PNG mask drawn on the stored pixels."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[5:15, 8:30] = 255  # a white patch near the stored top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    image_path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(image_path, "JPEG", quality=100, exif=exif.tobytes())
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 8:30] = 255
    mask_path = tmp_path / "rotated_segmentation.png"
    Image.fromarray(mask).save(mask_path)
    return image_path, mask_path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_image_brings_its_mask_along(tmp_path, orientation):
    image_path, mask_path = _rotated_pair(tmp_path, orientation)
    assert read_header(image_path) == ((60, 40), orientation)
    image, mask = load_image_and_mask(image_path, mask_path)
    expected_size = (40, 60) if orientation in (6, 8) else (60, 40)
    assert image.size == expected_size and mask.shape == expected_size[::-1]
    patch = np.asarray(image).mean(axis=2) > 127
    assert patch.sum() > 150
    assert (patch == mask).mean() > 0.99  # JPEG ringing aside, the mask sits on the patch
    # The plain loaders agree: the image is upright, the mask as stored.
    assert load_image(image_path).size == expected_size
    assert load_mask(mask_path).shape == (40, 60)


def test_mask_drawn_on_the_upright_image_is_kept(tmp_path):
    image_path, _ = _rotated_pair(tmp_path, 6)
    upright = load_image(image_path)
    mask = (np.asarray(upright).mean(axis=2) > 127).astype(np.uint8) * 255
    mask_path = tmp_path / "upright_segmentation.png"
    Image.fromarray(mask).save(mask_path)
    _, loaded = load_image_and_mask(image_path, mask_path)
    np.testing.assert_array_equal(loaded, mask > 0)


def test_mask_of_another_size_names_both_files(tmp_path, save_image):
    image_path = save_image(tmp_path / "a.jpg", size=(30, 20))
    mask_path = save_image(tmp_path / "b_segmentation.png", size=(31, 20), mask_box=(0, 0, 5, 5))
    with pytest.raises(ValueError, match=r"mask .*b_segmentation\.png is 31×20 but image .*a\.jpg is 30×20"):
        load_image_and_mask(image_path, mask_path)
    with pytest.raises(ValueError, match="31×20 but its image is 30×20"):
        load_mask(mask_path, size=(30, 20))


def test_huge_header_is_refused_before_decoding(tmp_path):
    bomb = _png_with_header_size(tmp_path / "bomb.png", 30000, 30000)
    assert bomb.stat().st_size < 1000
    with pytest.raises(ImageLoadError, match=r"bomb\.png .*decompression bomb.*900000000 pixels.*50,000,000"):
        load_image(bomb)
    big = _png_with_header_size(tmp_path / "big.png", 10000, 8000)  # above our limit, below PIL's
    with pytest.raises(ImageLoadError, match=r"big\.png is 10000×8000 = 80,000,000 pixels, over the limit of 50,000,000"):
        load_image(big)
    assert 10000 * 8000 > MAX_PIXELS


def test_tiny_image_is_refused(tmp_path, save_image):
    path = save_image(tmp_path / "dot.png", size=(4, 30))
    with pytest.raises(ImageLoadError, match=r"dot\.png is 4×30 pixels, below the minimum side of 8 px"):
        load_image(path)


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((10, 10), 0.5, np.float32), 128),
        (np.full((10, 10, 1), 200, np.uint8), 200),
        (np.full((10, 10, 3), 65535, np.uint16), 255),
        (np.ones((10, 10), bool), 255),
    ],
)
def test_arrays(array, expected):
    assert (np.asarray(load_image(array)) == expected).all()


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((10, 10), 2.0), r"float image array must hold finite values in \[0, 1\]"),
        (np.zeros((10, 10, 2), np.uint8), "must be H×W, H×W×3 or H×W×4"),
        (np.zeros((10, 10), np.int64), "unsupported image array dtype int64"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(ImageLoadError, match=message):
        load_image(array)


@pytest.mark.parametrize("high", [1, 255])
def test_mask_encodings(tmp_path, high):
    values = np.zeros((10, 12), np.uint8)
    values[2:6, 3:9] = high
    path = tmp_path / "mask.png"
    Image.fromarray(values).save(path)
    mask = load_mask(path)
    assert mask.dtype == bool and mask.shape == (10, 12) and mask.sum() == 24


def test_rgb_and_16_bit_masks():
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:5, :, 0] = 255  # a red lesion counts
    rgb[5:, :] = 100  # dim grey does not
    assert load_mask(rgb).sum() == 50
    deep = np.zeros((10, 10), np.uint16)
    deep[:3] = 65535
    deep[3:5] = 20000  # below half range
    assert load_mask(deep).sum() == 30


@pytest.mark.parametrize("quality", [5, 20, 49, 50, 51, 75, 95, 100])
def test_a_jpeg_keeps_the_quality_it_was_saved_at_and_other_files_have_none(tmp_path, quality):
    """Read from the luminance quantisation table (libjpeg's, which Pillow writes): the pixels alone no longer say it."""
    pixels = (np.random.default_rng(quality).random((48, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.jpg", quality=quality)
    assert jpeg_quality(Image.open(tmp_path / "image.jpg")) == quality
    assert load_image(tmp_path / "image.jpg").info["jpeg_quality"] == quality
    assert load_image((tmp_path / "image.jpg").read_bytes()).info["jpeg_quality"] == quality
    Image.fromarray(pixels).save(tmp_path / "image.png")
    assert jpeg_quality(Image.open(tmp_path / "image.png")) is None
    assert "jpeg_quality" not in load_image(tmp_path / "image.png").info and "jpeg_quality" not in load_image(pixels).info
