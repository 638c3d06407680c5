"""Datasets, metadata encoding and the class-balanced sampler: shapes, dtypes, values, balance."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dermfuse import vocab
from dermfuse.data.datasets import ClassificationDataset, SegmentationDataset, class_balanced_sampler
from dermfuse.data.transforms import to_tensor
from dermfuse.data.metadata import encode_metadata
from dermfuse.data.readers import read_image_folder
from dermfuse.data.transforms import Augment


@pytest.fixture
def folder_table(tmp_path, save_image):
    """Six 40×30 images (three with masks) with labels and partial metadata, read as a folder."""
    (tmp_path / "labels.csv").write_text(
        "image,label,age,sex,site\n"
        "C0,nv,35,female,back\nC1,mel,,male,face\nC2,nv,60,,\nC3,mel,80,female,lower extremity\n"
        "C4,nv,20,male,palms/soles\nC5,nv,45,female,trunk\n"
    )
    for i in range(6):
        save_image(tmp_path / "images" / f"C{i}.jpg", size=(40, 30), colour=(30 * i, 100, 150))
        if i < 3:
            save_image(tmp_path / "masks" / f"C{i}_segmentation.png", size=(40, 30), mask_box=(10, 5, 30, 25))
    return read_image_folder(tmp_path)


def test_segmentation_dataset(folder_table):
    with_masks = folder_table[folder_table["mask_path"].notna()]
    dataset = SegmentationDataset(with_masks, size=(24, 32), augment=Augment())
    assert len(dataset) == 3
    image, mask = dataset[0]
    assert image.shape == (3, 24, 32) and image.dtype == torch.float32
    assert mask.shape == (1, 24, 32) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    plain_image, plain_mask = SegmentationDataset(with_masks, size=30)[1]
    assert plain_image.shape == (3, 30, 30)
    assert plain_mask.mean().item() == pytest.approx(20 * 20 / (40 * 30), abs=0.03)


def test_segmentation_dataset_needs_masks(folder_table):
    with pytest.raises(ValueError, match=r"3 row\(s\) have no mask_path \(e\.g\. C3, C4, C5\)"):
        SegmentationDataset(folder_table, size=32)


def test_classification_dataset_items(folder_table):
    dataset = ClassificationDataset(folder_table, classes=("mel", "nv"), image_size=(28, 28))
    item = dataset[1]
    assert set(item) == {"image", "label", "age", "sex", "site", "image_id"}  # no lesion stream asked for
    assert item["image"].shape == (3, 28, 28) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.long and item["label"].item() == 0  # mel
    assert math.isnan(item["age"].item()) and item["age"].dtype == torch.float32
    assert item["sex"].item() == vocab.SEXES.index("male")
    assert item["site"].item() == vocab.SITES.index("head/neck")
    assert dataset[2]["sex"].item() == vocab.SEXES.index("unknown")
    assert dataset[2]["site"].item() == vocab.SITES.index("unknown")

    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 3, 28, 28)
    assert batch["age"].shape == (4,) and batch["age"].dtype == torch.float32
    assert batch["sex"].dtype == torch.long and batch["site"].shape == (4,)
    assert batch["label"].tolist() == [1, 0, 1, 0] and batch["image_id"] == ["C0", "C1", "C2", "C3"]


def test_classification_dataset_lesion_stream(folder_table):
    seen = []

    def crop_centre(image: np.ndarray, mask):
        seen.append(mask is None)
        assert image.dtype == np.uint8 and image.ndim == 3
        return image[5:25, 10:30] if mask is None else np.where(mask[..., None], image, 0)

    dataset = ClassificationDataset(folder_table, ("mel", "nv"), 16, lesion_image_fn=crop_centre, augment=Augment())
    items = [dataset[i] for i in (0, 4)]
    assert all(item["lesion"].shape == (3, 16, 16) for item in items)
    assert seen == [False, True]  # a row with a mask hands it (augmented) to the function


def test_twins_come_only_when_asked_and_match_their_views(folder_table):
    from PIL import Image

    grain = np.random.default_rng(0).normal(128, 20, (30, 40, 3))  # what one more JPEG save changes a little
    Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8)).save(folder_table["image_path"][0])
    lesion = lambda image, mask: image[4:20, 4:20]  # noqa: E731
    plain = ClassificationDataset(folder_table, ("mel", "nv"), 16, lesion_image_fn=lesion)[0]
    assert "image_twin" not in plain and "lesion_twin" not in plain
    item = ClassificationDataset(folder_table, ("mel", "nv"), 16, lesion_image_fn=lesion, twins=True)[0]
    for stream in ("image", "lesion"):
        assert item[f"{stream}_twin"].shape == item[stream].shape == (3, 16, 16)
        assert torch.equal(item[stream], plain[stream])  # the twin is added; the view itself is as it was
        assert 0 < (item[f"{stream}_twin"] - item[stream]).abs().mean() < 0.3


def test_a_central_square_model_learns_from_the_central_square_of_both_streams(folder_table):
    """As HAM10000's prepared images are cut: a 40×30 frame becomes its central 30×30, mask alike."""
    from dermfuse.data.io import load_image_and_mask

    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # content that a squeeze would move
    Image.fromarray(noise).save(folder_table["image_path"][0])
    masks = []
    dataset = ClassificationDataset(folder_table, ("mel", "nv"), 30, framing="central_square",
                                    lesion_image_fn=lambda image, mask: masks.append(mask) or image)
    image, mask = load_image_and_mask(folder_table["image_path"][0], folder_table["mask_path"][0])
    square = image.crop((5, 0, 35, 30))
    item = dataset[0]
    assert torch.equal(item["image"], to_tensor(square, 30)) and torch.equal(item["lesion"], to_tensor(square, 30))
    assert masks[0].shape == (30, 30) and np.array_equal(masks[0], np.asarray(mask)[:, 5:35])
    whole = ClassificationDataset(folder_table, ("mel", "nv"), 30)[0]["image"]
    assert not torch.equal(whole, item["image"])  # the default squeezes the whole frame
    with pytest.raises(ValueError, match="unknown image framing"):
        ClassificationDataset(folder_table, ("mel", "nv"), 30, framing="crop")


def test_classification_dataset_validation(folder_table):
    with pytest.raises(ValueError, match=r"labels \['mel'\] are not among the classes \('nv',\)"):
        ClassificationDataset(folder_table, classes=("nv",), image_size=16)
    no_paths = folder_table.assign(image_path=None)
    with pytest.raises(ValueError, match="read the dataset with images=True"):
        ClassificationDataset(no_paths, classes=("mel", "nv"), image_size=16)
    unlabelled = folder_table.assign(label=None)
    assert ClassificationDataset(unlabelled, ("mel", "nv"), 16)[0]["label"].item() == -1


def test_encode_metadata():
    one = encode_metadata(55, "female", "back")
    assert one["age"].tolist() == [55.0] and one["age"].dtype == torch.float32
    assert one["sex"].tolist() == [0] and one["site"].tolist() == [vocab.SITES.index("posterior torso")]
    batch = encode_metadata([None, 40, float("nan")], ["male", "", None], "chest")
    assert torch.isnan(batch["age"][[0, 2]]).all() and batch["age"][1] == 40
    assert batch["sex"].tolist() == [1, 2, 2] and batch["site"].tolist() == [0, 0, 0]
    assert batch["sex"].dtype == torch.long and batch["site"].dtype == torch.long
    with pytest.raises(ValueError, match="unknown lesion site 'elbow'"):
        encode_metadata(30, "male", "elbow")
    with pytest.raises(ValueError, match="metadata sex has 2 values for a batch of 3"):
        encode_metadata([1, 2, 3], ["male", "female"], None)


def test_class_balanced_sampler_balances():
    labels = [0] * 90 + [1] * 9 + [2] * 1
    sampler = class_balanced_sampler(labels, seed=0, num_samples=6000)
    drawn = Counter(labels[i] for i in sampler)
    assert len(sampler) == 6000
    for cls in (0, 1, 2):
        assert abs(drawn[cls] / 6000 - 1 / 3) < 0.03, drawn
    assert list(class_balanced_sampler(labels, seed=0)) == list(class_balanced_sampler(labels, seed=0))
    assert list(class_balanced_sampler(labels, seed=0)) != list(class_balanced_sampler(labels, seed=1))
    names = Counter(["nv", "mel", "nv", "nv"][i] for i in class_balanced_sampler(["nv", "mel", "nv", "nv"], num_samples=4000))
    assert abs(names["mel"] / 4000 - 0.5) < 0.04


def test_class_balanced_sampler_refuses_unlabelled():
    with pytest.raises(ValueError, match="unlabelled rows"):
        class_balanced_sampler([0, 1, -1])
