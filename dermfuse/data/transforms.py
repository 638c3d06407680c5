"""Preprocessing (image → normalised tensor) and train-time augmentation: one path for every caller.

Preprocessing resizes to the model's input size with antialiasing and normalises with the ImageNet
statistics the timm backbones were trained with. Images are resized to exactly (H, W), not
letterboxed: dermoscopy frames are near 4:3 and the lesion stream gets a square crop anyway *(ours)*.

:class:`Augment` works on the loaded PIL image and its boolean mask at native resolution, before
preprocessing, and applies every geometric change to both identically (so the lesion mask and the
lesion image stay on the lesion). Photometric changes and synthetic hair touch the image only.
It draws its randomness from an explicit ``numpy.random.Generator``, so it is reproducible; see
:meth:`Augment.__call__` for how it behaves inside DataLoader workers.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from dermfuse.constants import IMAGE_FRAMINGS, IMAGENET_MEAN, IMAGENET_STD


_ROTATIONS = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}

# The eight ways to hold a square image (dermoscopy has no "up"): name → (the orientation, the way back), each a
# function of an (H, W, ...) array. np.rot90 turns counter-clockwise. ``experiments/orientation.py`` measures the
# model in each; the app's teaching view shows one.
ORIENTATIONS = {
    "as it is": (lambda a: a, lambda a: a),
    "quarter turn left": (lambda a: np.rot90(a, 1), lambda a: np.rot90(a, -1)),
    "half turn": (lambda a: np.rot90(a, 2), lambda a: np.rot90(a, 2)),
    "quarter turn right": (lambda a: np.rot90(a, -1), lambda a: np.rot90(a, 1)),
    "mirrored left-right": (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
    "mirrored top-bottom": (lambda a: a[::-1], lambda a: a[::-1]),
    "mirrored on the diagonal": (lambda a: a.swapaxes(0, 1), lambda a: a.swapaxes(0, 1)),
    "mirrored on the other diagonal": (lambda a: np.rot90(a, 2).swapaxes(0, 1), lambda a: np.rot90(a, 2).swapaxes(0, 1)),
}


def oriented(image: Image.Image | np.ndarray, name: str) -> np.ndarray:
    """``image`` (PIL or an (H, W, ...) array) in orientation ``name`` of :data:`ORIENTATIONS`, as a contiguous array."""
    if name not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {name!r}: expected one of {', '.join(ORIENTATIONS)}")
    return np.ascontiguousarray(ORIENTATIONS[name][0](np.asarray(image)))


def to_tensor(image: Image.Image | np.ndarray, size, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """RGB PIL image, or its pixels as a uint8 array (H, W, 3), → float32 tensor (3, H, W): resized to
    ``size`` = (H, W) or an int with antialiasing, scaled to [0, 1] and normalised by ``mean``/``std``.

    A contiguous writable array is read in place, so a caller that has the pixels already pays no second copy."""
    height, width = _size(size)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        pixels = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)  # (3, h, w), as pil_to_tensor's
    elif isinstance(image, Image.Image) and image.mode == "RGB":
        pixels = F.pil_to_tensor(image)  # (3, h, w) uint8
    else:
        raise ValueError("to_tensor expects an RGB PIL image (load it with dermfuse.data.load_image) or its uint8 "
                         f"pixels (H, W, 3), got {type(image).__name__} {getattr(image, 'shape', getattr(image, 'mode', ''))}")
    pixels = F.resize(pixels, [height, width], antialias=True)  # (3, H, W)
    return F.normalize(F.to_dtype(pixels, torch.float32, scale=True), list(mean), list(std))


def view_box(width: int, height: int, framing: str, field: tuple[int, int, int, int] | None = None
             ) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1) of a ``width``×``height`` frame that the image stream sees under ``framing``
    (``constants.IMAGE_FRAMINGS``), or ``None`` when it sees the whole frame (``whole``, or a square frame). With
    ``field`` (a box in the frame: a dermatoscope's lit field, ``field_of_view.lit_field``), within that box."""
    if framing not in IMAGE_FRAMINGS:
        raise ValueError(f"unknown image framing {framing!r}: expected one of {', '.join(IMAGE_FRAMINGS)}")
    if field is not None:
        x0, y0, x1, y1 = field
        inner = view_box(x1 - x0, y1 - y0, framing)
        return field if inner is None else (x0 + inner[0], y0 + inner[1], x0 + inner[2], y0 + inner[3])
    if framing == "whole" or width == height:
        return None
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def image_view(frame: Image.Image | np.ndarray, framing: str, field: tuple[int, int, int, int] | None = None
               ) -> Image.Image | np.ndarray:
    """The part of a frame that the image stream sees under ``framing`` (:func:`view_box`, within ``field`` when given):
    of a PIL image, or of an array whose first two axes are the frame's (uint8 pixels (H, W, 3), a mask (H, W))."""
    width, height = frame.size if isinstance(frame, Image.Image) else (frame.shape[1], frame.shape[0])
    box = view_box(width, height, framing, field)
    if box is None:
        return frame
    x0, y0, x1, y1 = box
    return frame.crop(box) if isinstance(frame, Image.Image) else frame[y0:y1, x0:x1]


def mask_to_tensor(mask: np.ndarray, size) -> torch.Tensor:
    """Bool mask (h, w) → float32 tensor (1, H, W) of 0/1, resized like the image
    (antialiased bilinear, then ≥ 0.5), so the mask's border sits where the image's does."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {mask.shape}")
    height, width = _size(size)
    values = torch.from_numpy(mask.astype(np.float32))[None]  # (1, h, w)
    values = F.resize(values, [height, width], antialias=True)  # (1, H, W)
    return (values >= 0.5).float()


def to_image(tensor: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Image.Image:
    """Undo :func:`to_tensor`'s normalisation: (3, H, W) tensor → RGB PIL image, e.g. for overlays."""
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(tensor.shape)}")
    mean_t = torch.tensor(mean, dtype=tensor.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=tensor.dtype).view(3, 1, 1)
    pixels = ((tensor.detach().cpu() * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)
    return F.to_pil_image(pixels)


@dataclass
class Augment:
    """Train-time augmentation of an image and its mask.

    Geometric, identical on image and mask: random crop covering ``scale`` of the area with aspect
    jitter ``ratio`` (RandomResizedCrop-style; the resize happens in :func:`to_tensor`), horizontal
    and vertical flips, rotations by multiples of 90° (dermoscopy has no "up"). Image only: colour
    jitter (brightness/contrast/saturation factors in 1 ± value, hue shift in ± ``hue`` turns), a colour cast (each
    channel's gain drawn from 1 ± ``colour_cast``, then scaled to a mean gain of 1: a white balance set differently,
    which a 15 % cast shows the shipped model reads as evidence, ``experiments/capture.py``) and,
    with probability ``hair_probability``, up to ``max_hairs`` thin dark curved hairs: hair is the
    commonest occluder in dermoscopy and the lesion stays a lesion underneath it, so the mask is
    unchanged. With probability ``jpeg_probability`` the image is saved once more as JPEG at a quality drawn
    from ``jpeg_quality`` (last, as an upload is): one more save at quality 95 moves the shipped model's scores by
    hundredths (``experiments/stability.py``), and users' photos have been saved any number of times.

    ``mask_jitter`` (classifier training only; the segmenter's mask is its target and must stay exact):
    the mask alone is grown or shrunk by up to that fraction of the lesion's side and shifted by up to
    the same fraction, as a segmenter's outline varies from one view of a lesion to the next. The lesion
    image cut from it then varies too, so the lesion stream does not hinge on one exact crop.
    """

    flips: bool = True
    rotate90: bool = True
    scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    colour_cast: float = 0.0
    hair_probability: float = 0.0
    max_hairs: int = 12
    jpeg_probability: float = 0.0
    jpeg_quality: tuple[int, int] = (70, 95)
    mask_jitter: float = 0.0

    def __post_init__(self):
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale={self.scale}: need 0 < min <= max <= 1 (fractions of the image area)")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio={self.ratio}: need 0 < min <= max")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)}: need a value in [0, 1)")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue={self.hue}: need a value in [0, 0.5]")
        if not 0.0 <= self.colour_cast < 0.5:
            raise ValueError(f"colour_cast={self.colour_cast}: need a value in [0, 0.5) (0.15: each channel's gain in 1 ± 0.15)")
        if not 0.0 <= self.hair_probability <= 1.0 or self.max_hairs < 1:
            raise ValueError("hair_probability must be in [0, 1] and max_hairs at least 1")
        if not 0.0 <= self.jpeg_probability <= 1.0 or not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_probability={self.jpeg_probability}, jpeg_quality={self.jpeg_quality}: need a "
                             "probability in [0, 1] and qualities 1 <= low <= high <= 100")
        if not 0.0 <= self.mask_jitter < 0.5:
            raise ValueError(f"mask_jitter={self.mask_jitter}: need a fraction of the lesion's side in [0, 0.5)")

    def __call__(self, image: Image.Image, mask: np.ndarray | None = None, rng=None):
        """Augment ``image`` (RGB PIL) and ``mask`` (bool (H, W) or None); returns (image, mask).

        ``rng``: a ``numpy.random.Generator``, an int seed or a ``torch.Generator`` (reproducible),
        or None: then a seed is drawn from torch's global generator, which a DataLoader seeds
        differently in every worker and epoch, so workers never repeat each other's augmentations
        and a run is reproducible under ``torch.manual_seed``.
        """
        rng = _numpy_generator(rng)
        if mask is not None and (mask.shape[1], mask.shape[0]) != image.size:
            raise ValueError(f"mask {mask.shape[::-1]} and image {image.size} differ in size: load them with load_image_and_mask")
        image, mask = self._crop(image, mask, rng)
        flip_h, flip_v, turns = rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(4))
        if self.flips and flip_h:
            image, mask = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), _apply(mask, lambda m: m[:, ::-1])
        if self.flips and flip_v:
            image, mask = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM), _apply(mask, lambda m: m[::-1])
        if self.rotate90 and turns:  # PIL's ROTATE_90 and np.rot90 both turn counter-clockwise
            image, mask = image.transpose(_ROTATIONS[turns]), _apply(mask, lambda m: np.rot90(m, turns))
        image = self._jitter(image, rng)
        if self.mask_jitter and mask is not None:
            mask = jitter_mask(np.ascontiguousarray(mask), self.mask_jitter, rng)
        if rng.random() < self.hair_probability:
            image = draw_hair(image, rng, int(rng.integers(1, self.max_hairs + 1)))
        if rng.random() < self.jpeg_probability:
            image = jpeg_again(image, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        return image, (None if mask is None else np.ascontiguousarray(mask))

    def _crop(self, image, mask, rng):
        width, height = image.size
        area = rng.uniform(*self.scale)
        aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        crop_w = min(width, max(1, round(width * math.sqrt(area * aspect))))
        crop_h = min(height, max(1, round(height * math.sqrt(area / aspect))))
        left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
        image = image.crop((left, top, left + crop_w, top + crop_h))
        return image, _apply(mask, lambda m: m[top : top + crop_h, left : left + crop_w])

    def _jitter(self, image, rng):
        brightness, contrast, saturation = (rng.uniform(1 - v, 1 + v) for v in (self.brightness, self.contrast, self.saturation))
        hue = rng.uniform(-self.hue, self.hue)
        image = F.adjust_brightness(image, brightness)
        image = F.adjust_contrast(image, contrast)
        image = F.adjust_saturation(image, saturation)
        image = F.adjust_hue(image, hue) if self.hue > 0 else image
        if self.colour_cast:  # drawn only when asked: runs without it keep their random streams
            gains = rng.uniform(1 - self.colour_cast, 1 + self.colour_cast, size=3)
            image = channel_gains(image, gains / gains.mean())
        return image


def channel_gains(image: Image.Image, gains) -> Image.Image:
    """``image`` with each channel (R, G, B) multiplied by its gain and clipped: a white balance set differently."""
    return Image.fromarray(np.clip(np.asarray(image, np.float32) * np.asarray(gains, np.float64), 0, 255).astype(np.uint8))


def jitter_mask(mask: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Grow or shrink ``mask`` by up to ``amount`` of the lesion's side, then shift it by up to as much.

    An empty mask stays empty, and a shrink never erases the lesion (it is skipped instead).
    """
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return mask
    side = max(np.ptp(ys), np.ptp(xs)) + 1
    radius = int(round(rng.uniform(-amount, amount) * side))
    if radius:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1, 2 * abs(radius) + 1))
        changed = (cv2.dilate if radius > 0 else cv2.erode)(mask.astype(np.uint8), disc).astype(bool)
        mask = changed if changed.any() else mask
    dy, dx = (int(round(rng.uniform(-amount, amount) * side)) for _ in range(2))
    return shifted_mask(mask, dy, dx)


def shifted_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by ``dy`` rows and ``dx`` columns, what leaves the frame dropped; ``mask`` itself if nothing
    would stay."""
    shifted = np.zeros_like(mask)
    height, width = mask.shape
    shifted[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = mask[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return shifted if shifted.any() else mask


def upload_twin(image: Image.Image, mask: np.ndarray | None = None, rng=None) -> tuple[Image.Image, np.ndarray | None]:
    """The same view as a second upload of it may come: saved once more as JPEG at quality 90–95, and its mask
    (if any) moved by one pixel up, down, left or right, as a mask pixel flipped at the lesion's edge moves the
    lesion box. One more save at quality 95 moved the shipped model's scores by 0.02 in the median and the top
    class on one image in twenty (``experiments/stability.py``); training with ``--consistency`` asks the
    classifier for the same scores on an image and its twin. ``rng`` as :class:`Augment`'s."""
    rng = _numpy_generator(rng)
    twin = jpeg_again(image, int(rng.integers(90, 96)))
    if mask is not None:
        dy, dx = ((1, 0), (-1, 0), (0, 1), (0, -1))[int(rng.integers(4))]
        mask = shifted_mask(np.ascontiguousarray(mask), dy, dx)
    return twin, mask


def jpeg_again(image: Image.Image, quality: int) -> Image.Image:
    """``image`` saved as JPEG at ``quality`` and decoded again."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def draw_hair(image: Image.Image, rng: np.random.Generator, count: int) -> Image.Image:
    """Draw ``count`` thin, dark, gently curved hairs (quadratic Bézier curves) across ``image``."""
    pixels = np.array(image)
    height, width = pixels.shape[:2]
    side = min(width, height)
    t = np.linspace(0.0, 1.0, 32)[:, None]
    for _ in range(count):
        start = rng.uniform((0, 0), (width, height))
        angle = rng.uniform(0, 2 * math.pi)
        end = start + rng.uniform(0.3, 0.9) * side * np.array([math.cos(angle), math.sin(angle)])
        bend = (start + end) / 2 + rng.normal(0, 0.15 * side, size=2)
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end  # (32, 2) x, y
        shade = rng.uniform(10, 70)
        colour = tuple(int(shade * k) for k in (1.0, 0.85, 0.7))  # dark brown to black
        thickness = max(1, round(side / 300 * rng.uniform(0.5, 1.5)))
        cv2.polylines(pixels, [np.round(curve).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)
    return Image.fromarray(pixels)


def _apply(mask, operation):
    return None if mask is None else operation(mask)


def _numpy_generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng).item()))
    return np.random.default_rng(rng)


def _size(size) -> tuple[int, int]:
    """An int or (height, width) → (height, width)."""
    height, width = (size, size) if isinstance(size, int) else tuple(size) if len(size) == 2 else (0, 0)
    if height < 1 or width < 1:
        raise ValueError(f"size={size}: give a positive int or (height, width)")
    return int(height), int(width)
