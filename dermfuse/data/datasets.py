"""PyTorch datasets over the unified table: segmentation pairs and classification cases.

Both load through :mod:`dermfuse.data.io`, augment with :class:`~dermfuse.data.transforms.Augment`
and preprocess with :func:`~dermfuse.data.transforms.to_tensor`: the path the app and the evaluation
use too. Rows are validated when the dataset is built (missing file paths, unknown labels, bad
metadata), not halfway through an epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset, WeightedRandomSampler

from dermfuse.data.colour_constancy import white_balanced
from dermfuse.data.io import load_image, load_image_and_mask
from dermfuse.data.metadata import encode_metadata
from dermfuse.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, Augment, image_view, mask_to_tensor, to_tensor, upload_twin,
                                      view_box)

# (augmented image as uint8 (H, W, 3), its bool mask (H, W) or None) → the lesion image (uint8 array or PIL).
# ``functools.partial(dermfuse.lesion.lesion_image, mode=...)`` fits when every row has a mask.
LesionImageFn = Callable[[np.ndarray, "np.ndarray | None"], "np.ndarray | Image.Image"]


class SegmentationDataset(Dataset):
    """(image (3, H, W) float32 normalised, mask (1, H, W) float32 0/1) for every row with a mask."""

    def __init__(self, table: pd.DataFrame, size, augment: Augment | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        _require_paths(table, ("image_path", "mask_path"))
        self.rows = table[["image_id", "image_path", "mask_path"]].to_dict("records")
        self.size, self.augment, self.mean, self.std = size, augment, mean, std

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.rows[index]
        image, mask = load_image_and_mask(row["image_path"], row["mask_path"])
        if self.augment is not None:
            image, mask = self.augment(image, mask)
        return to_tensor(image, self.size, self.mean, self.std), mask_to_tensor(mask, self.size)


class ClassificationDataset(Dataset):
    """One case per row, as a dict of tensors that the default collate stacks into a batch:

    - ``image``: (3, H, W) float32, the image, normalised. With ``framing="central_square"`` every image (and its
      mask) is first cut to its central square (``transforms.view_box``), as HAM10000's prepared images are, so
      a full-size download trains the model a shared copy does;
    - ``lesion``: (3, H, W) float32, present only when ``lesion_image_fn`` is given. It receives the
      augmented image (uint8 (H, W, 3) array) and its augmented mask (None when the row has no
      ``mask_path``; the function may then segment) and returns the lesion image (uint8 array or
      PIL image), so both streams see the same augmented view.
      No placeholder is invented when it is absent: a dual-stream model fed this dataset fails
      loudly on the missing key instead of learning from a fake lesion image;
    - ``label``: int64 index into ``classes`` (-1 for an unlabelled row);
    - ``age`` float32 (NaN = missing), ``sex`` / ``site`` int64 indices into ``vocab.SEXES`` /
      ``vocab.SITES``, as :func:`~dermfuse.data.metadata.encode_metadata` makes them;
    - ``image_id``: str;
    - with ``twins=True``, ``image_twin`` and ``lesion_twin`` as well: the same augmented view as a second upload
      of it may come (:func:`~dermfuse.data.transforms.upload_twin`), for ``--consistency`` training.

    ``white_balance`` (a light chromaticity, a model's ``white_balance``): each augmented view is white-balanced to it
    (:func:`~dermfuse.data.colour_constancy.white_balanced`) before both streams see it, as the pipeline does.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        classes: Sequence[str],
        image_size,
        lesion_image_fn: LesionImageFn | None = None,
        augment: Augment | None = None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        framing: str = "whole",
        twins: bool = False,
        white_balance: Sequence[float] | None = None,
    ):
        _require_paths(table, ("image_path",))
        view_box(1, 1, framing)  # an unknown framing fails here, not in a DataLoader worker
        self.classes = tuple(classes)
        unknown = sorted(set(table["label"].dropna()) - set(self.classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {self.classes}: filter the table or pass the right classes")
        self.labels = torch.tensor(
            [-1 if pd.isna(label) else self.classes.index(label) for label in table["label"]], dtype=torch.long
        )
        self.metadata = encode_metadata(table["age"].tolist(), table["sex"].tolist(), table["site"].tolist())
        mask_paths = table["mask_path"] if "mask_path" in table.columns else pd.Series(None, index=table.index)
        self.rows = [
            {"image_id": image_id, "image_path": path, "mask_path": None if pd.isna(mask) else mask}
            for image_id, path, mask in zip(table["image_id"], table["image_path"], mask_paths)
        ]
        self.image_size, self.lesion_image_fn, self.augment, self.mean, self.std, self.framing, self.twins = (
            image_size, lesion_image_fn, augment, mean, std, framing, twins,
        )
        self.white_balance = white_balance

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        if self.lesion_image_fn is not None and row["mask_path"] is not None:
            image, mask = load_image_and_mask(row["image_path"], row["mask_path"])
        else:
            image, mask = load_image(row["image_path"]), None
        # A model that sees central squares learns from them (as HAM10000's prepared images are): both streams.
        image, mask = image_view(image, self.framing), None if mask is None else image_view(mask, self.framing)
        if self.augment is not None:
            image, mask = self.augment(image, mask)
        seen = self._balanced(image)  # both streams see it as the pipeline's classifier_view makes it
        item = {
            "image": to_tensor(seen, self.image_size, self.mean, self.std),
            "label": self.labels[index],
            "age": self.metadata["age"][index],
            "sex": self.metadata["sex"][index],
            "site": self.metadata["site"][index],
            "image_id": row["image_id"],
        }
        if self.lesion_image_fn is not None:
            lesion = self.lesion_image_fn(np.asarray(seen), mask)
            item["lesion"] = to_tensor(lesion, self.image_size, self.mean, self.std)
        if self.twins:
            twin, twin_mask = upload_twin(image, mask)
            twin = self._balanced(twin)
            item["image_twin"] = to_tensor(twin, self.image_size, self.mean, self.std)
            if self.lesion_image_fn is not None:
                item["lesion_twin"] = to_tensor(self.lesion_image_fn(np.asarray(twin), twin_mask), self.image_size,
                                                self.mean, self.std)
        return item

    def _balanced(self, image: Image.Image) -> Image.Image:
        return image if self.white_balance is None else white_balanced(image, self.white_balance)


def class_balanced_sampler(labels: Sequence, seed: int = 0, num_samples: int | None = None) -> WeightedRandomSampler:
    """A sampler drawing every class equally often (with replacement): weight 1 / class count.

    ``labels``: class indices or names, one per dataset row; ``num_samples`` defaults to the
    dataset size (one "epoch"). Seeded, so the order of draws is reproducible.
    """
    labels = np.asarray(labels.tolist() if isinstance(labels, torch.Tensor) else list(labels))
    if labels.size == 0:
        raise ValueError("class_balanced_sampler needs at least one label")
    if np.issubdtype(labels.dtype, np.integer) and (labels < 0).any():
        raise ValueError("unlabelled rows (label -1) cannot be balanced: drop them from the training table")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    weights = torch.as_tensor(1.0 / counts[inverse], dtype=torch.double)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True, generator=generator)


def _require_paths(table: pd.DataFrame, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in table.columns:
            raise ValueError(f"the table has no {column} column: build it with a dermfuse.data reader")
        missing = table.loc[table[column].isna(), "image_id"].tolist()
        if missing:
            raise ValueError(
                f"{len(missing)} row(s) have no {column} (e.g. {', '.join(map(str, missing[:5]))}): "
                "read the dataset with images=True, or drop those rows"
            )
