"""The one image-loading path of dermfuse: training, evaluation, the CLI and the app all call this.

Why one path: a model is only as good as the agreement between the pixels it was trained on and the
pixels it is shown. Phone photos carry an EXIF orientation, exports come as 16-bit PNG, CMYK JPEG or
RGBA, and uploads can be empty, truncated or enormous. Every such case is settled here once:

- the EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so the image is upright;
- any mode becomes 8-bit RGB; 16-bit data is scaled (65535 → 255), never clipped;
- transparency is composited on white (not dropped: a transparent background would otherwise turn
  black, the colour of the dermoscope's vignette, and look like image content);
- the pixel count is checked from the file header BEFORE decoding, so a decompression bomb is
  refused without allocating its pixels; tiny images are refused too;
- a JPEG's quality (``jpeg_quality``, from its quantisation table) is kept in the image's ``info``: the
  decoded pixels no longer tell how hard the file was compressed, and the model's scores depend on it;
- a file PIL cannot decode fully (empty, not an image, truncated) raises :class:`ImageLoadError`; an
  iPhone's HEIC photo, which PIL cannot read, is named as one, with how to export it as JPEG.
  Truncated files are refused rather than padded (``LOAD_TRUNCATED_IMAGES`` is never set): a
  half-grey dermoscopy image would silently corrupt training and predictions.

Masks (ISIC convention: one channel, 0/255, same size as the image) are loaded by :func:`load_mask`
and aligned with their image by :func:`load_image_and_mask`.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # 50 megapixels: well above any dermatoscope (≈ 6000 × 4000 at most)
MIN_SIDE = 8  # pixels; below this there is no lesion to see
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}  # an iPhone photo's format

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]

# What PIL raises on a file whose header parsed but whose pixels do not decode (truncated, corrupt).
_DECODE_ERRORS = (OSError, SyntaxError, EOFError)

_ORIENTATION_TAG = 0x0112
# EXIF orientation → the PIL transpose that makes the image upright (the table of ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# The JPEG standard's example luminance table (Annex K), natural order: libjpeg and most encoders scale it by the
# quality setting (``jpeg_quality``).
_STANDARD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)


def _luminance_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at ``quality`` (1–100): the standard table scaled, each entry in 1–255."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_STANDARD_LUMINANCE * scale + 50) / 100), 1, 255)


_QUALITY_TABLES = np.stack([_luminance_table(q) for q in range(1, 101)])  # (100, 64)


class ImageLoadError(ValueError):
    """An image or mask that cannot be used: the message names the file and what to do about it."""


def load_image(source: ImageSource) -> Image.Image:
    """Load ``source`` as an upright 8-bit RGB ``PIL.Image``.

    ``source`` is a path, the bytes of an image file, a PIL image, or a numpy array (H×W, H×W×1,
    H×W×3 or H×W×4; uint8, uint16, bool, or float in [0, 1]). Raises :class:`ImageLoadError`
    (a ``ValueError``) naming the source when it is unreadable, too large or too small.
    Multi-frame files (TIFF, GIF) give their first frame.
    """
    image, name = _open(source)
    quality = jpeg_quality(image)
    try:
        rgb = _to_rgb(ImageOps.exif_transpose(image), name)
    except _DECODE_ERRORS as error:
        raise _decode_error(name, error) from None
    return _with_quality(rgb, quality)


def load_mask(source: ImageSource, size: tuple[int, int] | None = None) -> np.ndarray:
    """Load a lesion mask as a boolean array (H, W): True = lesion.

    Accepts one-channel 0/255 or 0/1 masks, 16-bit masks, and RGB(A) masks (any colour channel
    above half intensity counts as lesion; alpha is ignored). The mask's own EXIF orientation, if it
    has one, is applied. ``size`` = (width, height) is the size the mask must have, e.g. its
    image's ``.size``; a mask of another size raises ``ValueError`` rather than being resized
    silently. To load an image with its mask use :func:`load_image_and_mask`, which also handles
    an image whose EXIF rotation the plain PNG mask lacks.
    """
    image, name = _open(source)
    try:
        mask = _to_bool_mask(ImageOps.exif_transpose(image))
    except _DECODE_ERRORS as error:
        raise _decode_error(name, error) from None
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        raise ValueError(
            f"mask {name} is {mask.shape[1]}×{mask.shape[0]} but its image is {size[0]}×{size[1]}: "
            "a mask must have its image's size (check that the mask belongs to this image)"
        )
    return mask


def load_image_and_mask(image_source: ImageSource, mask_source: ImageSource) -> tuple[Image.Image, np.ndarray]:
    """Load an image (upright RGB) and its mask (bool H×W), aligned pixel for pixel.

    Segmentation masks (ISIC, PH2) are plain PNG/BMP without EXIF, drawn on the image's stored
    pixels, while the JPEG may carry an EXIF orientation. So: when the image has an orientation
    and the mask has the image's stored (un-rotated) size, the mask gets the same transpose as the
    image. A mask that already has the upright size is kept as it is. (A square image or a 180°
    orientation fits both readings; it is read as "drawn on the stored pixels", the way annotation
    tools see a file.) Any other size raises ``ValueError`` naming both files.
    """
    raw, image_name = _open(image_source)
    stored_size, orientation, quality = raw.size, _orientation(raw), jpeg_quality(raw)
    try:
        image = _with_quality(_to_rgb(ImageOps.exif_transpose(raw), image_name), quality)
    except _DECODE_ERRORS as error:
        raise _decode_error(image_name, error) from None
    mask_image, mask_name = _open(mask_source)
    try:
        mask_image = ImageOps.exif_transpose(mask_image)
        mask = _to_bool_mask(mask_image)
    except _DECODE_ERRORS as error:
        raise _decode_error(mask_name, error) from None
    transpose = mask_transpose(stored_size, orientation, mask_image.size, image_name, mask_name)
    if transpose is not None:
        mask = np.asarray(Image.fromarray(mask).transpose(transpose))
    return image, mask


def mask_transpose(
    stored_size: tuple[int, int],
    orientation: int,
    mask_size: tuple[int, int],
    image_name: str = "image",
    mask_name: str = "mask",
) -> Image.Transpose | None:
    """The transpose that aligns a mask of ``mask_size`` with its upright image, or None if none is needed.

    ``stored_size`` is the image's (width, height) as stored, ``orientation`` its EXIF orientation
    (1 = upright). Raises ``ValueError`` naming both files when the mask fits neither reading.
    Shared by :func:`load_image_and_mask` and the dataset readers' header-only size check.
    """
    transpose = _UPRIGHT.get(orientation)
    if tuple(mask_size) == tuple(stored_size):
        return transpose
    upright = stored_size[::-1] if orientation in (5, 6, 7, 8) else stored_size
    if tuple(mask_size) == tuple(upright):
        return None
    raise ValueError(
        f"mask {mask_name} is {mask_size[0]}×{mask_size[1]} but image {image_name} is "
        f"{upright[0]}×{upright[1]}: a mask must have its image's size (check that it belongs to this image)"
    )


def read_header(path: str | os.PathLike) -> tuple[tuple[int, int], int]:
    """The stored (width, height) and EXIF orientation of an image file, read from its header only.

    Cheap (no pixel decoding): the readers use it to check every mask against its image.
    """
    image, _ = _open(path)
    with image:
        return image.size, _orientation(image)


def jpeg_quality(image: Image.Image) -> int | None:
    """The quality (1–100) a JPEG was last saved at, or None when ``image`` is not a JPEG file.

    Read from the file's luminance quantisation table, as the quality whose libjpeg table is nearest it (mean absolute
    difference): exact for files saved by libjpeg (Pillow, OpenCV, most software), the nearest equivalent for cameras
    with tables of their own. Compression before the last save leaves no trace in the table.
    """
    tables = getattr(image, "quantization", None)
    if not tables:
        return None
    luminance = np.asarray(tables[min(tables)], dtype=np.float64)
    if luminance.shape != (64,):
        return None
    return int(np.argmin(np.abs(_QUALITY_TABLES - luminance).mean(axis=1))) + 1


def _with_quality(image: Image.Image, quality: int | None) -> Image.Image:
    """``image`` with the quality its JPEG file was saved at in ``info["jpeg_quality"]`` (when it came from one), where
    the pipeline reads it (a heavily compressed upload is told so, ``dermfuse.assess.compression_warning``)."""
    if quality is not None:
        image.info["jpeg_quality"] = quality
    return image


def _open(source: ImageSource) -> tuple[Image.Image, str]:
    """Open ``source`` lazily (header only for files) and apply the size guard. Returns (image, name)."""
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<PIL image>"
        _check_size(source.size, name)
        return source, name
    if isinstance(source, np.ndarray):
        image = _array_to_pil(source)
        _check_size(image.size, "<array>")
        return image, "<array>"
    if isinstance(source, (bytes, bytearray)):
        name, stream = "<bytes>", io.BytesIO(bytes(source))
        if not source:
            raise ImageLoadError("empty image data (0 bytes): upload or pass a real image file")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name, stream = str(path), path
        if path.is_dir():
            raise ImageLoadError(f"{path} is a folder, not an image file: give one image file")
        if not path.is_file():
            raise ImageLoadError(f"image file not found: {path}: check the path")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path} is empty (0 bytes): re-download or re-export it")
    else:
        raise ImageLoadError(
            f"cannot load an image from {type(source).__name__}: pass a path, bytes, a PIL image or a numpy array"
        )
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS guard is stricter than PIL's warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"{name} is refused as a possible decompression bomb ({error}); dermfuse's limit is "
            f"{MAX_PIXELS:,} pixels: downscale it before loading"
        ) from None
    except UnidentifiedImageError:
        if _is_heif(stream):
            raise ImageLoadError(
                f"{name} is a HEIC/HEIF photo (an iPhone's default format), which dermfuse cannot read: export it as "
                "JPEG (on an iPhone: share it with 'Most Compatible', or set Settings → Camera → Formats → Most "
                "Compatible) and upload that"
            ) from None
        raise ImageLoadError(
            f"{name} is not an image file PIL can read (wrong extension, text or unsupported format): "
            "convert it to JPEG or PNG"
        ) from None
    _check_size(image.size, name)
    return image, name


def _is_heif(stream: Path | io.BytesIO) -> bool:
    """Whether the file is HEIC/HEIF (an ISO box ``ftyp`` with a HEIF brand), which PIL cannot read."""
    if isinstance(stream, Path):
        with stream.open("rb") as file:
            head = file.read(12)
    else:
        head = stream.getvalue()[:12]
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageLoadError(
            f"{name} is {width}×{height} = {width * height:,} pixels, over the limit of {MAX_PIXELS:,} "
            "(a possible decompression bomb): downscale it before loading"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageLoadError(
            f"{name} is {width}×{height} pixels, below the minimum side of {MIN_SIDE} px: "
            "give a real photograph of the lesion"
        )


def _decode_error(name: str, error: Exception) -> ImageLoadError:
    return ImageLoadError(f"{name} could not be decoded ({error}): the file is truncated or corrupt; re-download or re-export it")


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a malformed EXIF block: treat as upright, as exif_transpose does
        return 1


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """Numpy H×W[×C] (bool, uint8, uint16, float in [0, 1]) → PIL image (L, RGB or RGBA)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageLoadError(f"an image array must be H×W, H×W×3 or H×W×4, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = _scale_16_to_8(array)
    elif np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)]
        if finite.size != array.size or finite.min() < 0.0 or finite.max() > 1.0:
            raise ImageLoadError("a float image array must hold finite values in [0, 1]: scale it (e.g. divide by 255)")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageLoadError(f"unsupported image array dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(array))


def _scale_16_to_8(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit values to 8 bits over the full range (65535 → 255), rounding, never clipping."""
    return np.round(np.clip(array.astype(np.float64), 0, 65535) / 257.0).astype(np.uint8)


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Any PIL mode → 8-bit RGB (decodes the pixels)."""
    image.load()
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # PIL holds 16-bit greyscale PNG as I;16 or I; its own convert("L") would clip at 255.
        grey = _scale_16_to_8(np.asarray(image))
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "F":
        raise ImageLoadError(f"{name} holds floating-point pixels (mode F): export it as 8- or 16-bit PNG")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK (PIL undoes Adobe's inverted CMYK), YCbCr, LAB, HSV


def _to_bool_mask(image: Image.Image) -> np.ndarray:
    """Any mask image → bool (H, W): 0/1 masks by > 0, otherwise by > half of the 8-bit range."""
    image.load()
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image)
        values = _scale_16_to_8(values) if values.max(initial=0) > 255 else values.astype(np.uint8)
    elif image.mode == "1":
        return np.asarray(image, dtype=bool).copy()
    else:
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGBA" if image.mode in ("P", "LA", "PA", "RGBA") else "RGB")
        values = np.asarray(image)
        if values.ndim == 3:
            values = values[:, :, :3].max(axis=2)
    if values.max(initial=0) <= 1:
        return values > 0
    return values > 127
