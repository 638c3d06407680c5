"""From segmenter output to the lesion image the second encoder sees.

``masks_from_logits`` is the one way segmenter logits become masks at each image's own size: the
pipeline (app, CLI, evaluation) and stage 2's mask cache both call it, so the classifier trains
on exactly the lesion images it is later shown. ``clean_mask`` turns a probability map into one
solid lesion (threshold, largest connected component, holes filled). ``lesion_image`` crops the mask's bounding box with a margin, made
square, and blanks the surrounding skin to the normalisation mean (zero after normalisation), so
the lesion encoder sees the lesion and nothing of the background. Training (stage 2), evaluation
and the app all make lesion images with this one function. ``lesion_crop_box`` says where in the
image the lesion image was cut from, and ``paste_into_frame`` puts a map made on the lesion image
back there, so the lesion stream's heatmap lies over the lesion, not stretched over the frame.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image

from .constants import IMAGENET_MEAN, LESION_MODES


def clean_mask(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Probability map (H, W) → boolean mask of the largest connected component, holes filled."""
    binary = (np.asarray(probability) >= threshold).astype(np.uint8)
    count, labels = cv2.connectedComponents(binary, connectivity=8)  # a quarter of the time with stats
    if count <= 1:
        return np.zeros(binary.shape, dtype=bool)
    if count == 2:  # one component (the usual case): it is the mask
        component = binary
    else:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)  # the same labels, with areas
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        component = (labels == largest).astype(np.uint8)
    # Fill holes: flood the background from outside (a one-pixel frame); what stays unreached is a hole.
    framed = cv2.copyMakeBorder(component, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flood = framed.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return component.astype(bool) | holes


def masks_from_logits(logits: torch.Tensor, sizes, each=map) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Segmenter logits (B, 1, h, w) → each image's probability map (H, W) float32 and its cleaned mask
    (H, W) bool, at the image's size; ``sizes`` are (width, height) pairs, as PIL's ``image.size``.

    Sigmoid at the segmenter's resolution, bilinear resize to the image (half-pixel centres), then
    :func:`clean_mask`. ``each`` maps that over the images (the pipeline passes its thread pool's).
    """
    probabilities = torch.sigmoid(logits.float())[:, 0].cpu().numpy()  # (B, h, w)

    def at_size(probability: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
        resized = cv2.resize(probability, (int(size[0]), int(size[1])), interpolation=cv2.INTER_LINEAR)  # (H, W)
        return resized, clean_mask(resized)

    pairs = list(each(at_size, probabilities, sizes))
    return [resized for resized, _ in pairs], [mask for _, mask in pairs]


def lesion_box(mask: np.ndarray, margin: float = 0.15) -> tuple[int, int, int, int]:
    """Square box (x0, y0, x1, y1) around the mask, ``margin`` of its side added on each side.

    The box may reach outside the image; ``lesion_image`` pads with the fill colour there.
    """
    x0, y0, width, height = cv2.boundingRect(mask.astype(np.uint8))  # the mask's bounding box
    x1, y1 = x0 + width, y0 + height
    side = max(height, width)
    side = int(round(side * (1 + 2 * margin)))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    return left, top, left + side, top + side


def lesion_crop_box(mask: np.ndarray, mode: str = "crop_mask", margin: float = 0.15) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1) in the image that the lesion image is cut from, or ``None`` when the
    lesion image is the whole frame (mode ``mask``, or no lesion found). It may reach outside the image."""
    if mode not in LESION_MODES:
        raise ValueError(f"unknown lesion mode {mode!r}: expected one of {', '.join(LESION_MODES)}")
    if mode == "mask" or not mask.any():
        return None
    return lesion_box(mask, margin)


def paste_into_frame(values: np.ndarray, box: tuple[int, int, int, int] | None, shape: tuple[int, int]) -> np.ndarray:
    """A map (h, w) made on an image cut from ``box`` of a frame of ``shape`` (H, W), put back there: resized
    to the box, zero around it; the part of the box outside the frame (padding) is dropped. With
    ``box=None`` the map covered the whole frame: it is resized to it."""
    height, width = shape
    if box is None:
        return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = box
    placed = cv2.resize(values, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    frame = np.zeros((height, width), values.dtype)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    frame[cy0:cy1, cx0:cx1] = placed[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return frame


def lesion_image(
    image: np.ndarray,
    mask: np.ndarray,
    mode: str = "crop_mask",
    margin: float = 0.15,
    fill: tuple[int, int, int] = (124, 116, 104),
    dilation: float = 0.03,
) -> np.ndarray:
    """The lesion image (uint8 RGB) for the lesion encoder; the whole image if the mask is empty.

    ``mode``: ``crop_mask`` crops the square box and blanks the skin outside the slightly dilated
    mask (by ``dilation`` of the box side), ``mask`` blanks without cropping, ``crop`` crops only.
    ``fill`` is the normalisation mean in 0–255 (ImageNet's by default), so blanked pixels are zero
    after normalisation. Resizing to the encoder's input happens in the shared transform.
    """
    if mode not in LESION_MODES:
        raise ValueError(f"unknown lesion mode {mode!r}: expected one of {', '.join(LESION_MODES)}")
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape[:2]}")
    if not mask.any():
        return image.copy()
    fill_pixel = np.asarray(fill, dtype=np.uint8)
    out = image
    if mode in ("crop_mask", "mask"):
        x, y, width, height = cv2.boundingRect(mask.astype(np.uint8))
        radius = max(1, int(round(dilation * max(width, height))))
        # Dilation by a disc, as a distance threshold: linear in the image size whatever the radius. Only pixels
        # within ``radius`` of the mask's box in each axis can be kept (the chamfer distance is at least the
        # largest axis distance), so the distance is taken in that window alone.
        h, w = mask.shape
        reach = radius + 1
        top, bottom = max(0, y - reach), min(h, y + height + reach)
        left, right = max(0, x - reach), min(w, x + width + reach)
        keep = np.zeros(mask.shape, np.uint8)
        skin = (~mask[top:bottom, left:right]).astype(np.uint8)
        keep[top:bottom, left:right] = cv2.distanceTransform(skin, cv2.DIST_L2, 5) <= radius
        out = filled(image.shape, fill_pixel)
        cv2.copyTo(np.ascontiguousarray(image), keep, out)  # the image where kept, the fill elsewhere
    box = lesion_crop_box(mask, mode, margin)
    if box is not None:
        x0, y0, x1, y1 = box
        h, w = mask.shape
        pad = max(0, -x0, -y0, x1 - w, y1 - h)
        if pad:
            out = cv2.copyMakeBorder(np.ascontiguousarray(out), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill_pixel.tolist())
        out = out[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    return np.ascontiguousarray(out)


def filled(shape: tuple[int, ...], colour) -> np.ndarray:
    """A new uint8 image (H, W, 3) of one colour: one row tiled, then copied down (numpy's broadcast of a
    3-vector into every pixel takes 40 times as long)."""
    row = np.tile(np.asarray(colour, dtype=np.uint8), (shape[1], 1))  # (W, 3)
    return np.broadcast_to(row, (shape[0], shape[1], 3)).copy()


def lesion_image_fn(mode: str = "crop_mask", margin: float = 0.15, mean=IMAGENET_MEAN):
    """``(image, bool mask or None) → lesion image`` with a model's settings: a PIL image for a PIL image, a
    uint8 array (H, W, 3) for an array (the pipeline's, which skips the round trip through PIL).

    The one way training and inference turn an image and its mask into the lesion stream's input.
    ``mask=None`` (no mask known) gives the whole image, as an empty mask does.
    """
    fill = tuple(int(round(255 * m)) for m in mean)

    def make(image: Image.Image | np.ndarray, mask: np.ndarray | None) -> Image.Image | np.ndarray:
        if mask is None:
            return image
        lesion = lesion_image(np.asarray(image), np.asarray(mask, dtype=bool), mode, margin, fill)
        return lesion if isinstance(image, np.ndarray) else Image.fromarray(lesion)

    return make
