"""Tests of the phantom benchmark generator (dermfuse.data.phantom)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from dermfuse import vocab
from dermfuse.data.phantom import (
    Phantom,
    Shortcut,
    class_counts,
    contact_sheet,
    derive_metadata_stats,
    generate_dataset,
    generate_phantom,
    image_seed,
    sample_metadata,
)
from dermfuse.data.phantom.__main__ import main as phantom_cli
from dermfuse.data.phantom.metadata import AGE_BINS, AGE_COUNTS, LOCALIZATION_COUNTS, SEX_COUNTS
from dermfuse.data.readers import read_ham10000

CLASSES = vocab.HAM10000_CLASSES
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HAM_CSV = SHARED_DATA / "HAM10000_metadata.csv"
needs_ham = pytest.mark.skipif(not HAM_CSV.exists(), reason=f"real HAM10000 metadata not found at {HAM_CSV}")
KERNEL = np.ones((3, 3), np.uint8)


def violet_pixels(image: np.ndarray) -> np.ndarray:
    """Marker-ink violet (OpenCV hue 125–160, saturated, not dark: noise on dark hair can look violet)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return (hsv[..., 0] >= 125) & (hsv[..., 0] <= 160) & (hsv[..., 1] >= 80) & (hsv[..., 2] >= 70)


def ring_outside(mask: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Pixels between ``start`` and ``stop`` px outside the mask."""
    m = mask.astype(np.uint8)
    near = cv2.dilate(m, KERNEL, iterations=start) if start else m
    return cv2.dilate(m, KERNEL, iterations=stop).astype(bool) & ~near.astype(bool)


# --- one phantom ----------------------------------------------------------------------------------


def test_same_seed_same_bytes_and_different_seed_differs():
    a = generate_phantom("mel", 7, size=96)
    b = generate_phantom("mel", 7, size=96)
    c = generate_phantom("mel", 8, size=96)
    assert a.image.tobytes() == b.image.tobytes() and np.array_equal(a.mask, b.mask)
    assert (a.age, a.sex, a.localization, a.meta) == (b.age, b.sex, b.localization, b.meta)
    assert a.image.tobytes() != c.image.tobytes()
    assert not np.array_equal(a.mask, c.mask)


@pytest.mark.parametrize("label", CLASSES)
def test_phantom_fields_shapes_and_mask(label):
    for seed in range(4):
        p = generate_phantom(label, seed, size=128)
        assert isinstance(p, Phantom) and p.label == label
        assert p.image.shape == (128, 128, 3) and p.image.dtype == np.uint8
        assert p.mask.shape == (128, 128) and p.mask.dtype == bool
        assert p.age is None or p.age in AGE_BINS
        assert p.sex in vocab.SEXES and p.site in vocab.SITES
        assert p.site == vocab.HAM10000_SITE_MAP[p.localization]
        assert 0.02 <= p.mask.mean() <= 0.55, p.mask.mean()
        assert p.meta["area_fraction"] == pytest.approx(p.mask.mean(), abs=1e-4)
        n_components, _ = cv2.connectedComponents(p.mask.astype(np.uint8), connectivity=8)
        assert n_components == 2, "mask must be one connected lesion (plus background)"
        border = np.concatenate([p.mask[0], p.mask[-1], p.mask[:, 0], p.mask[:, -1]])
        assert not border.any(), "lesion touches the frame border"


@pytest.mark.parametrize("label", CLASSES)
def test_mask_is_pixel_exact(label):
    """The colour jumps exactly at the mask boundary: inner ring vs the ring just outside differ far
    more than two rings of skin outside do (clean renders, no blur/JPEG)."""
    for seed in range(6):
        p = generate_phantom(label, seed, size=128, nuisances=False)
        img = p.image.astype(np.float64)
        m = p.mask.astype(np.uint8)
        inner = p.mask & ~cv2.erode(m, KERNEL).astype(bool)
        out1, out2 = ring_outside(p.mask, 0, 1), ring_outside(p.mask, 3, 4)
        jump = np.abs(img[inner].mean(0) - img[out1].mean(0)).sum()
        skin_step = np.abs(img[out1].mean(0) - img[out2].mean(0)).sum()
        assert jump > 5.0 and jump > 2.0 * skin_step, (seed, jump, skin_step)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="unknown label"):
        generate_phantom("melanoma", 0)
    with pytest.raises(ValueError, match="difficulty"):
        generate_phantom("nv", 0, difficulty=1.5)
    with pytest.raises(ValueError, match="mode"):
        Shortcut("mel", 0.9, "sometimes")
    with pytest.raises(ValueError, match="strength"):
        Shortcut("mel", 1.2)
    with pytest.raises(ValueError, match="TARGET:STRENGTH"):
        Shortcut.parse("mel")


def test_shortcut_parse_and_probabilities():
    assert Shortcut.parse("mel:0.9") == Shortcut("mel", 0.9, "present")
    s = Shortcut.parse("bcc:0.8:reversed")
    assert s.ink_probability("bcc") == pytest.approx(0.2) and s.ink_probability("nv") == pytest.approx(0.8)
    assert Shortcut("mel", 0.9).ink_probability("mel") == 0.9
    assert Shortcut("mel", 0.9).ink_probability("nv") == pytest.approx(0.1)
    assert Shortcut("mel", 0.9, "absent").ink_probability("mel") == 0.0


# --- shortcut ink ---------------------------------------------------------------------------------


@pytest.mark.parametrize("label", CLASSES)
def test_shortcut_ink_only_with_target_class_and_outside_the_lesion(label):
    present, absent = Shortcut("mel", 1.0, "present"), Shortcut("mel", 1.0, "absent")
    for seed in range(3):
        inked = generate_phantom(label, seed, size=128, shortcut=present)
        plain = generate_phantom(label, seed, size=128, shortcut=absent)
        far_from_lesion = ~cv2.dilate(inked.mask.astype(np.uint8), KERNEL, iterations=5).astype(bool)
        violet = violet_pixels(inked.image) & far_from_lesion
        assert not (violet_pixels(plain.image) & far_from_lesion).any()
        assert not plain.meta["shortcut_ink"]
        if label == "mel":
            assert inked.meta["shortcut_ink"] and violet.sum() >= 15, violet.sum()
        else:
            assert not inked.meta["shortcut_ink"] and violet.sum() == 0


def test_shortcut_counterfactual_pair_differs_only_outside_the_mask():
    for label in ("mel", "nv", "vasc"):
        for seed in range(3):
            inked = generate_phantom(label, seed, size=128, shortcut=Shortcut(mode="always"), nuisances=False)
            plain = generate_phantom(label, seed, size=128, shortcut=Shortcut(mode="absent"), nuisances=False)
            assert np.array_equal(inked.mask, plain.mask)
            changed = np.any(inked.image != plain.image, axis=-1)
            assert changed.any() and not (changed & inked.mask).any()
            assert violet_pixels(inked.image)[changed].mean() > 0.5  # what changed is violet ink


# --- metadata -------------------------------------------------------------------------------------


@needs_ham
def test_count_table_matches_real_metadata():
    stats = derive_metadata_stats(HAM_CSV)
    assert stats == {"age": AGE_COUNTS, "sex": SEX_COUNTS, "localization": LOCALIZATION_COUNTS}


@needs_ham
def test_sampled_metadata_follows_real_per_class_statistics():
    real = pd.read_csv(HAM_CSV)
    rng = np.random.default_rng(0)
    for label in CLASSES:
        rows = real[real["dx"] == label]
        draws = pd.DataFrame([sample_metadata(label, rng) for _ in range(3000)], columns=["age", "sex", "localization"])
        assert abs(draws["age"].dropna().mean() - rows["age"].dropna().mean()) < 2.0, label
        for column in ("sex", "localization"):
            p = rows[column].value_counts(normalize=True)
            q = draws[column].value_counts(normalize=True)
            tv = 0.5 * p.subtract(q, fill_value=0.0).abs().sum()
            assert tv <= 0.05, (label, column, tv)
        site_p = rows["localization"].map(vocab.HAM10000_SITE_MAP).value_counts(normalize=True)
        site_q = draws["localization"].map(vocab.HAM10000_SITE_MAP).value_counts(normalize=True)
        assert 0.5 * site_p.subtract(site_q, fill_value=0.0).abs().sum() <= 0.05, label


# --- difficulty -----------------------------------------------------------------------------------


def _colour_features(p: Phantom) -> np.ndarray:
    lab = cv2.cvtColor(p.image, cv2.COLOR_RGB2LAB).astype(np.float64)[p.mask]
    return np.concatenate([lab.mean(0), lab.std(0), np.percentile(lab, [10, 90], axis=0).ravel()])


def _nearest_centroid_accuracy(difficulty: float, n: int = 10) -> float:
    features, labels = [], []
    for k, label in enumerate(CLASSES):
        for seed in range(2 * n):
            features.append(_colour_features(generate_phantom(label, 1000 + seed, size=64, difficulty=difficulty)))
            labels.append(k)
    x, y = np.array(features), np.array(labels)
    train = np.tile(np.arange(2 * n) < n, len(CLASSES))
    z = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)
    centroids = np.stack([z[train & (y == k)].mean(0) for k in range(len(CLASSES))])
    predicted = np.argmin(((z[~train, None] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((predicted == y[~train]).mean())


def test_difficulty_makes_classes_overlap():
    easy, hard = _nearest_centroid_accuracy(0.0), _nearest_centroid_accuracy(1.0)
    assert easy >= 0.7 and easy > hard + 0.25, (easy, hard)


# --- dataset on disk ------------------------------------------------------------------------------


def test_class_counts():
    assert class_counts(700) == {c: 100 for c in CLASSES}
    assert sum(class_counts(10).values()) == 10 and max(class_counts(10).values()) == 2
    ham = class_counts(1000, "ham10000")
    assert sum(ham.values()) == 1000 and ham["nv"] == max(ham.values())
    assert class_counts(5, {"mel": 1, "nv": 4}) == {**{c: 0 for c in CLASSES}, "mel": 1, "nv": 4}
    with pytest.raises(ValueError, match="unknown classes"):
        class_counts(5, {"melanoma": 1})


def test_generate_dataset_writes_the_ham10000_layout(tmp_path):
    out = tmp_path / "phantoms"
    csv_path = generate_dataset(out, 14, seed=3, size=64, shortcut=Shortcut("mel", 0.9), progress=False)
    assert csv_path == out / "HAM10000_metadata.csv"
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
        rows = list(reader)
    assert len(rows) == 14 and [r["image_id"] for r in rows][:2] == ["PHANTOM_0000001", "PHANTOM_0000002"]
    assert rows[0]["lesion_id"] == "PH_0000001" and {r["dx_type"] for r in rows} == {"phantom"}
    assert sorted(r["dx"] for r in rows) == sorted(CLASSES * 2)
    for r in rows:
        assert r["age"] == "" or float(r["age"]) in AGE_BINS
        assert r["sex"] in vocab.SEXES and r["localization"] in vocab.HAM10000_SITE_MAP
        image = cv2.imread(str(out / "HAM10000_images" / f"{r['image_id']}.jpg"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(out / "HAM10000_segmentations_lesion_tschandl" / f"{r['image_id']}_segmentation.png"),
                          cv2.IMREAD_UNCHANGED)  # fmt: skip
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
    # image i is generate_phantom(label_i, image_seed(seed, i)), whatever the workers
    expected = generate_phantom(rows[5]["dx"], image_seed(3, 5), size=64, shortcut=Shortcut("mel", 0.9))
    mask = cv2.imread(str(out / "HAM10000_segmentations_lesion_tschandl" / "PHANTOM_0000006_segmentation.png"), 0)
    assert np.array_equal(mask > 0, expected.mask)
    config = json.loads((out / "phantom_config.json").read_text())
    assert config["seed"] == 3 and config["shortcut"] == {"target": "mel", "strength": 0.9, "mode": "present"}
    truth = pd.read_csv(out / "phantom_truth.csv")
    assert list(truth["image_id"]) == [r["image_id"] for r in rows]
    assert not list(out.rglob(".*.tmp"))
    table = read_ham10000(out, masks=True)  # the project's real HAM10000 reader
    assert list(table["image_id"]) == [r["image_id"] for r in rows] and table["mask_path"].notna().all()
    assert list(table["site"]) == [vocab.HAM10000_SITE_MAP[r["localization"]] for r in rows]
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_dataset(out, 2, size=64, progress=False)


def test_workers_do_not_change_the_output(tmp_path):
    generate_dataset(tmp_path / "one", 6, seed=1, size=48, progress=False)
    generate_dataset(tmp_path / "two", 6, seed=1, size=48, workers=2, progress=False)
    for name in ("HAM10000_metadata.csv", "HAM10000_images/PHANTOM_0000004.jpg"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_command_line_and_contact_sheet(tmp_path):
    sheet = tmp_path / "sheet.png"
    assert phantom_cli(["--out", str(tmp_path / "ds"), "--n", "7", "--size", "48", "--shortcut", "mel:1"]) == 0
    assert len(pd.read_csv(tmp_path / "ds" / "HAM10000_metadata.csv")) == 7
    grid = contact_sheet(sheet, per_class=2, size=48)
    assert sheet.exists() and grid.shape[0] >= 7 * 48 and grid.shape[1] >= 2 * 48
