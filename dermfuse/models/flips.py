"""Flip averaging: a classifier's score of an image as the mean of its logits over flipped views of it.

A dermoscopy image has no up, down, left or right: a lesion flipped is the same lesion, and training
flips images at random for that reason. A trained network still answers a little differently to
each flip of one image; the mean over the flips moves less when the image is saved again. A model's
``flip_views`` says how many views its classifier sees: 1 (the image as it is; the default, and the
shipped model's), 2 (and flipped left to right), 4 (and flipped top to bottom, and both: a half turn)
or 8 (each of those mirrored on the diagonal too: all eight orientations of the square, quarter turns
included, so the score is the same however the image is turned or mirrored; the networks' inputs are
square). The views are stacked view-major along the batch, ``(V·B, ...)``: view 0 is the image as it
is, so its rows are what a one-view model computes. What 4 views did to the shipped model (better AUC and
calibration, lower balanced accuracy on the test split, so not shipped): README, "Flip averaging"; how
much one view's score depends on the orientation, and what 8 views change: ``experiments/orientation.py``.

Grad-CAM of the averaged score (``explain.py``) gives each view's map in that view's frame;
:func:`unflipped` puts them back in the image's frame before they are averaged.
"""

from __future__ import annotations

import numpy as np
import torch

FLIP_VIEWS = (1, 2, 4, 8)
# Each view: the axes it flips, counted from the end ((..., H, W) tensors and (..., h, w) maps alike), then whether it
# mirrors on the diagonal (swaps H and W). The first four are the flips; the last four, the same mirrored.
FLIPS = tuple((axes, diagonal) for diagonal in (False, True) for axes in ((), (-1,), (-2,), (-2, -1)))


def check_flip_views(views: int) -> int:
    """``views`` if it is one of ``FLIP_VIEWS``, else a ``ValueError`` that lists them."""
    if views not in FLIP_VIEWS:
        allowed = ", ".join(map(str, FLIP_VIEWS))
        raise ValueError(f"flip_views must be one of {allowed} (1: no flip averaging), got {views!r}")
    return int(views)


def flipped_views(batch: torch.Tensor | None, views: int) -> torch.Tensor | None:
    """(B, ..., H, W) → (V·B, ..., H, W): the batch as it is, then each flip of it, view-major."""
    if batch is None or views == 1:
        return batch
    assert views < 8 or batch.shape[-2] == batch.shape[-1], "mirroring on the diagonal needs square inputs"
    return torch.cat([_view(batch, axes, diagonal) for axes, diagonal in FLIPS[:views]])


def _view(batch: torch.Tensor, axes: tuple, diagonal: bool) -> torch.Tensor:
    flipped = batch.flip(axes) if axes else batch
    return flipped.transpose(-2, -1) if diagonal else flipped


def repeated(values: torch.Tensor, views: int) -> torch.Tensor:
    """(B, ...) → (V·B, ...): per-case values (metadata) for each view, in :func:`flipped_views`' order."""
    return values if views == 1 else values.repeat(views, *([1] * (values.dim() - 1)))


def view_mean(values: torch.Tensor, views: int) -> torch.Tensor:
    """(V·B, ...) → (B, ...): the mean over the views (of logits, for the score)."""
    return values if views == 1 else values.reshape(views, -1, *values.shape[1:]).mean(0)


def unflipped(maps: np.ndarray, views: int) -> np.ndarray:
    """(V·B, h, w) maps, each in its view's frame → (V, B, h, w), every one in the image's frame."""
    per_view = maps.reshape(views, -1, *maps.shape[1:])
    back = [view.swapaxes(-2, -1) if diagonal else view for view, (_, diagonal) in zip(per_view, FLIPS)]  # undo the
    return np.stack([np.flip(view, axes) if axes else view for view, (axes, _) in zip(back, FLIPS)])  # last step first
