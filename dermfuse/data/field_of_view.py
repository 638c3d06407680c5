"""A dermatoscope's round field of view: its dark frame found and filled in, and the lit field's box.

Many dermatoscopes light a round field, and the camera's rectangle around it stays near-black. The HAM10000
classifier learned from central crops that (almost) never show such a frame. On HAM10000 validation images given
a round black frame, its top class changed on 22–30 % of them, and balanced accuracy fell from 0.69 to 0.43–0.52
(``experiments/dark_frame.py``). A model whose config says ``dark_frame: "filled"`` has the pipeline show its
classifier's streams each image with the frame filled in from the skin next to it (OpenCV's Telea inpainting),
and its image stream the lit field's bounding box, framed as the model's ``image_framing`` says
(``transforms.view_box``). The segmenter, the gate and the measurements still see the image as it is. The option is
chosen after training, by that study: a classifier learns from its images as they are (HAM10000's hold almost no
frames). It is not the shipped model's: on real framed images its log-loss rose (the study's table in
``docs/RESULTS.md``).

The frame is the near-black pixels connected to the image's edge. Many frames end in a thin light line at the very
edge, so the outer ``EDGE`` pixels count as edge. It is found and filled on a copy ``DETECT`` pixels on its longer
side, then grown over its soft, dim rim (which also covers such a line). Only the frame's pixels of the full-size
image are replaced, so an image without a frame is returned as it is.
"""

from __future__ import annotations

import cv2
import numpy as np

DETECT = 256  # the frame is found and filled on a copy this many pixels on its longer side
NEAR_BLACK = 40  # R + G + B at most this is frame (a JPEG's black is seldom exactly 0)
EDGE = 2  # the copy's outer pixels count as the image's edge
LEAST_FRAME = 0.002  # near-black pixels connected to the edge cover at least this share of the copy, or there is no frame
LEAST_FIELD = 0.25  # the lit field covers at least this share of the copy, or the image is left as it is (too dark)
RIM = 0.03  # the frame is grown by this share of the copy's longer side, over the field's dim rim
INPAINT_RADIUS = 5  # pixels of the copy around each filled pixel that Telea's method draws on


def dark_frame(image: np.ndarray) -> np.ndarray | None:
    """The dark frame around a dermatoscope's lit field: the near-black pixels connected to the edge of a copy of
    ``image`` (H, W, 3 uint8) ``DETECT`` pixels on its longer side, as uint8 (h, w), 1 on the frame; ``None`` when the
    image has no frame, or is too dark to tell a field from a frame."""
    height, width = image.shape[:2]
    scale = DETECT / max(height, width)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    near_black = (small.astype(np.int16).sum(axis=2) <= NEAR_BLACK).astype(np.uint8)
    edge = np.zeros_like(near_black)
    edge[:EDGE], edge[-EDGE:], edge[:, :EDGE], edge[:, -EDGE:] = 1, 1, 1, 1
    _, labels = cv2.connectedComponents(near_black | edge, connectivity=8)
    frame = (labels == labels[0, 0]).astype(np.uint8) & near_black  # the near-black pixels the edge reaches
    if frame.mean() < LEAST_FRAME or 1 - frame.mean() < LEAST_FIELD:
        return None
    return frame


def lit_field(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """``image`` (H, W, 3 uint8) with its dark frame (:func:`dark_frame`) filled in from the skin next to it, and the lit
    field's box (x0, y0, x1, y1) in its pixels; the image itself and ``None`` where it has no frame."""
    frame = dark_frame(image)
    if frame is None:
        return image, None
    reach = max(1, round(RIM * max(frame.shape)))  # over the field's dim rim and any light line at the image's edge
    frame = cv2.dilate(frame, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1)))
    height, width = image.shape[:2]
    small = cv2.resize(image, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_AREA)
    filled = cv2.resize(cv2.inpaint(small, frame, INPAINT_RADIUS, cv2.INPAINT_TELEA), (width, height),
                        interpolation=cv2.INTER_LINEAR)
    outside = cv2.resize(frame, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = image.copy()
    out[outside] = filled[outside]
    rows, columns = np.nonzero(~outside)
    return out, (int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)
