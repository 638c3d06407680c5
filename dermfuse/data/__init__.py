"""Data: loading images and masks, reading the public datasets into one table, splits, transforms, datasets.

Everything that turns files into tensors lives here, shared by training, evaluation, the CLI and the app.
"""

from dermfuse.data.datasets import ClassificationDataset, SegmentationDataset, class_balanced_sampler
from dermfuse.data.io import MAX_PIXELS, MIN_SIDE, ImageLoadError, load_image, load_image_and_mask, load_mask
from dermfuse.data.metadata import encode_metadata
from dermfuse.data.readers import (
    read_dataset,
    read_ham10000,
    read_image_folder,
    read_isic2018_task1,
    read_isic2018_task3,
    read_isic2019,
    read_ph2,
)
from dermfuse.data.splits import check_manifest, kfold, make_splits, read_manifest, write_manifest
from dermfuse.data.table import TABLE_COLUMNS, combine
from dermfuse.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augment, mask_to_tensor, to_image, to_tensor

__all__ = [
    "Augment",
    "ClassificationDataset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageLoadError",
    "MAX_PIXELS",
    "MIN_SIDE",
    "SegmentationDataset",
    "TABLE_COLUMNS",
    "check_manifest",
    "class_balanced_sampler",
    "combine",
    "encode_metadata",
    "kfold",
    "load_image",
    "load_image_and_mask",
    "load_mask",
    "make_splits",
    "mask_to_tensor",
    "read_dataset",
    "read_ham10000",
    "read_image_folder",
    "read_isic2018_task1",
    "read_isic2018_task3",
    "read_isic2019",
    "read_manifest",
    "read_ph2",
    "to_image",
    "to_tensor",
    "write_manifest",
]
