"""Skin tone (ITA°) around the lesion: known colours give known angles and bands, artefacts are left out,
bad input is "not measurable" with its reason, real HAM10000 images give plausible values."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage.color import lab2rgb

from dermfuse import skin_tone
from dermfuse.skin_tone import BAND_NAMES, ita_band, measure_skin_tone, skin_pixels

SIZE = 200
# (L*, b*) of skin patches whose ITA lies well inside each band: very light … dark.
PATCHES = {"very light": (80.0, 10.0), "light": (66.7, 15.0), "intermediate": (62.4, 18.0), "tan": (56.9, 20.0),
           "brown": (46.5, 20.0), "dark": (38.0, 12.0)}


def lab_patch(lightness: float, yellowness: float, redness: float = 10.0, size: int = SIZE) -> np.ndarray:
    """An RGB uint8 image (size, size, 3) of one CIELAB colour."""
    lab = np.broadcast_to(np.array([lightness, redness, yellowness], dtype=float), (size, size, 3))
    return np.round(255 * lab2rgb(lab)).astype(np.uint8)


def disc(size: int = SIZE, radius: int = 35) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius, 1, -1)
    return mask.astype(bool)


def with_lesion(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    image = image.copy()
    image[mask] = (70, 40, 30)  # a dark brown lesion
    return image


@pytest.mark.parametrize("band", list(PATCHES))
def test_a_patch_of_known_colour_gives_its_angle_and_band(band):
    lightness, yellowness = PATCHES[band]
    expected = math.degrees(math.atan((lightness - 50) / yellowness))
    mask = disc()
    tone = measure_skin_tone(with_lesion(lab_patch(lightness, yellowness), mask), mask)
    assert tone.band == band and abs(tone.ita - expected) < 1.0, (tone, expected)
    assert abs(tone.lightness - lightness) < 0.6 and abs(tone.yellowness - yellowness) < 0.6
    assert tone.reason is None and not tone.colour_cast and tone.skin_share > 0.5


@pytest.mark.parametrize("ita, band", [(55.0, "light"), (55.01, "very light"), (41.0, "intermediate"), (28.0, "tan"),
                                       (10.0, "brown"), (-29.99, "brown"), (-30.0, "dark"), (90.0, "very light"),
                                       (-90.0, "dark")])
def test_band_edges_belong_to_the_lower_band(ita, band):
    assert ita_band(ita) == band


def test_an_angle_outside_minus_90_to_90_is_refused():
    with pytest.raises(ValueError, match="-90 to 90"):
        ita_band(120.0)


def test_hair_vignette_glare_and_ink_are_left_out():
    lightness, yellowness = PATCHES["light"]
    mask = disc()
    clean = with_lesion(lab_patch(lightness, yellowness), mask)
    messy = clean.copy()
    hair = np.zeros(mask.shape, np.uint8)
    for x in range(10, SIZE, 23):  # thin dark hairs across the skin
        cv2.line(hair, (x, 0), (x + 40, SIZE - 1), 1, 2)
    messy[hair.astype(bool)] = (25, 18, 15)
    corners = np.ones(mask.shape, np.uint8)
    cv2.circle(corners, (SIZE // 2, SIZE // 2), int(SIZE * 0.62), 0, -1)  # a dermatoscope's dark vignette
    messy[corners.astype(bool)] = (12, 10, 10)
    cv2.circle(messy, (30, 150), 8, (255, 255, 255), -1)  # glare
    cv2.rectangle(messy, (150, 20), (175, 40), (60, 40, 150), -1)  # purple ink mark
    _, skin = skin_pixels(messy, mask)
    assert not skin[hair.astype(bool)].any() and not skin[corners.astype(bool)].any()
    assert not skin[150, 30] and not skin[30, 160]
    ita_clean, ita_messy = measure_skin_tone(clean, mask).ita, measure_skin_tone(messy, mask).ita
    assert abs(ita_messy - ita_clean) < 1.0, (ita_clean, ita_messy)


def test_the_skin_next_to_the_lesion_is_not_counted():
    mask = disc()
    _, skin = skin_pixels(with_lesion(lab_patch(*PATCHES["tan"]), mask), mask)
    margin = skin_tone.MARGIN * SIZE
    ys, xs = np.nonzero(skin)
    distance = np.hypot(ys - SIZE // 2, xs - SIZE // 2)
    assert distance.min() > 35 + margin - 1.5


@pytest.mark.parametrize("lightness, ita, band", [(70.0, 90.0, "very light"), (40.0, -90.0, "dark")])
def test_a_colour_cast_gives_the_limit_angle_and_says_so(lightness, ita, band):
    mask = disc()
    tone = measure_skin_tone(with_lesion(lab_patch(lightness, -6.0), mask), mask)
    assert tone.colour_cast and tone.ita == ita and tone.band == band and tone.yellowness < 0


def test_no_skin_outside_the_lesion_is_not_measurable_with_the_reason():
    mask = np.ones((SIZE, SIZE), bool)
    mask[:2] = False  # a lesion that fills the frame but a two-pixel strip
    tone = measure_skin_tone(lab_patch(*PATCHES["light"]), mask)
    assert tone.ita is None and tone.band is None and "too little skin" in tone.reason
    assert tone.to_dict()["reason"] == tone.reason


def test_no_lesion_found_is_not_measurable_with_the_reason():
    tone = measure_skin_tone(lab_patch(*PATCHES["light"]), np.zeros((SIZE, SIZE), bool))
    assert tone.ita is None and "no lesion was found" in tone.reason


@pytest.mark.parametrize("image, mask, message", [
    (np.zeros((20, 20), np.uint8), np.zeros((20, 20), bool), "RGB uint8"),
    (np.zeros((20, 20, 3), np.uint8), np.zeros((10, 20), bool), "the image's size"),
])  # fmt: skip
def test_bad_arrays_are_refused_with_what_to_pass(image, mask, message):
    with pytest.raises(ValueError, match=message):
        measure_skin_tone(image, mask)


def test_a_large_image_is_measured_at_the_working_size_with_the_same_result():
    mask = disc()
    small = with_lesion(lab_patch(*PATCHES["intermediate"]), mask)
    large = cv2.resize(small, (1600, 1600), interpolation=cv2.INTER_NEAREST)
    large_mask = cv2.resize(mask.astype(np.uint8), (1600, 1600), interpolation=cv2.INTER_NEAREST).astype(bool)
    lab, _ = skin_pixels(large, large_mask)
    assert max(lab.shape[:2]) == skin_tone.WORK_SIDE
    assert abs(measure_skin_tone(large, large_mask).ita - measure_skin_tone(small, mask).ita) < 0.5


def test_training_distribution_share_and_rare_caution():
    bands = ["very light"] * 90 + ["light"] * 9 + ["brown"] + [None] * 5
    stored = skin_tone.band_distribution(bands, colour_cast=40)
    assert stored["images"] == 105 and stored["measured"] == 100 and stored["counts"]["brown"] == 1
    assert list(stored["counts"]) == list(BAND_NAMES) and stored["rare_share"] == skin_tone.RARE_SHARE
    brown = skin_tone.describe(skin_tone.SkinTone(-12.0, "brown", 45.0, 18.0, 0.5), stored)
    assert brown["training_share"] == 0.01 and brown["rare_in_training"]
    caution = skin_tone.rare_tone_caution(brown, stored)
    assert "'brown'" in caution and "1 of 100" in caution and "2 %" in caution
    light = skin_tone.describe(skin_tone.SkinTone(50.0, "light", 70.0, 17.0, 0.5), stored)
    assert not light["rare_in_training"] and skin_tone.rare_tone_caution(light, stored) is None
    unmeasured = skin_tone.describe(skin_tone.SkinTone(None, None, reason="x"), stored)
    assert "training_share" not in unmeasured and skin_tone.rare_tone_caution(unmeasured, stored) is None
    assert "training_share" not in skin_tone.describe(skin_tone.SkinTone(-12.0, "brown"), None)  # no stored distribution
    with pytest.raises(ValueError, match="unknown skin-tone bands"):
        skin_tone.band_distribution(["olive"])


def test_real_ham10000_images_give_plausible_skin_tones(shared_data):
    from dermfuse.data import read_dataset
    from dermfuse.data.io import load_image_and_mask

    folder = shared_data / "HAM10000"
    if not (folder / "HAM10000_segmentations_lesion_tschandl").is_dir():
        pytest.skip(f"HAM10000 images with masks not found at {folder}")
    rows = read_dataset(folder).sample(40, random_state=0)
    tones = []
    for row in rows.itertuples():
        image, mask = load_image_and_mask(row.image_path, row.mask_path)
        tones.append(measure_skin_tone(np.asarray(image), mask))
    measured = [t for t in tones if t.ita is not None]
    assert len(measured) >= 0.85 * len(tones), [t.reason for t in tones if t.ita is None]
    assert all(-90 <= t.ita <= 90 and t.band in BAND_NAMES for t in measured)
    assert all(40 < t.lightness < 95 for t in measured)  # dermoscopy skin: lit, never near black or white
    # HAM10000 comes from two centres of mostly fair-skinned patients: mostly the lightest bands.
    assert np.mean([t.band in ("very light", "light") for t in measured]) > 0.75
    assert all(t.reason for t in tones if t.ita is None)


def test_the_report_judges_a_band_only_with_enough_images_and_melanomas():
    import pandas as pd

    from experiments.skin_tone import per_band

    classes = ["mel", "nv"]
    rng = np.random.default_rng(0)
    labels = ["mel"] * 8 + ["nv"] * 32 + ["mel"] * 2 + ["nv"] * 8 + ["nv"] * 3
    bands = ["very light"] * 40 + ["tan"] * 10 + [None] * 3
    melanoma = np.where(np.array(labels) == "mel", rng.uniform(0.4, 1, len(labels)), rng.uniform(0, 0.6, len(labels)))
    table = pd.DataFrame({"label": labels, "band": bands, "colour_cast": False, "p_mel": melanoma, "p_nv": 1 - melanoma})
    rows = per_band(table, classes, min_images=30, min_melanomas=5, bootstrap=200)
    judged, thin, unmeasured = rows["very light"], rows["tan"], rows["not measurable"]
    assert judged["images"] == 40 and judged["melanomas"] == 8 and judged["labels"] == {"nv": 32, "mel": 8}
    assert 0.5 < judged["melanoma_auc"] <= 1 and judged["melanoma_auc_ci"][0] <= judged["melanoma_auc"] <= judged["melanoma_auc_ci"][1]
    assert "balanced_accuracy" in judged and "balanced_accuracy_ci" in judged
    assert "balanced_accuracy" not in thin and "10 < 30" in thin["balanced_accuracy_thin"]
    assert "melanoma_auc" not in thin and "2 and 8" in thin["melanoma_auc_thin"]
    assert unmeasured["images"] == 3 and rows["dark"] == {"images": 0, "melanomas": 0, "colour_cast": 0, "labels": {}}
