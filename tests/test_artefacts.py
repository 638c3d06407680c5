"""The artefact inserter (``dermfuse/data/artefacts.py``): templates read as described, pasted only where their
footprint says, reproducible from a seed, clear errors; and Katsch et al.'s real templates where they are."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dermfuse.data.artefacts import ArtefactInserter, load_templates, paste, templates_folder, transform

SKIN = (200, 150, 130)


@pytest.fixture
def template_folder(tmp_path):
    """A folder laid out like Katsch et al.'s: one bubble (a with/without pair) and one ink spot (on white)."""
    bubble = tmp_path / "src" / "ISIC_1"
    spot = tmp_path / "src" / "ISIC_2"
    bubble.mkdir(parents=True)
    spot.mkdir(parents=True)
    without = np.full((20, 24, 3), SKIN, np.uint8)
    with_bubble = without.copy()
    with_bubble[6:14, 8:16] = (250, 240, 245)  # the artefact
    Image.fromarray(with_bubble).save(bubble / "ISIC_1_with_03.png")
    Image.fromarray(without).save(bubble / "ISIC_1_without_03.png")
    ink = np.full((16, 30, 3), 255, np.uint8)
    ink[7:10, 3:27] = (60, 40, 160)
    Image.fromarray(ink).save(spot / "ISIC_2_03.png")
    meta = {"artefacts": [
        {"class": "bubble", "preprocessor": "difference", "name": "ISIC_1", "artefact_folder": "src/ISIC_1", "source": 0},
        {"class": "marking", "subclass": "spot", "name": "ISIC_2", "artefact_folder": "src/ISIC_2", "source": 0},
    ]}  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return tmp_path


def skin_image(height: int = 64, width: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(SKIN, 10, (height, width, 3)), 0, 255).astype(np.uint8)


def test_templates_are_read_as_their_readme_describes(template_folder):
    bubble, spot = load_templates(template_folder)
    assert (bubble.kind, bubble.blend, spot.kind, spot.subclass, spot.blend) == ("bubble", "add", "marking", "spot", "multiply")
    assert bubble.footprint.sum() == 64 and bubble.footprint[6:14, 8:16].all()  # exactly where with ≠ without
    assert spot.footprint.sum() == 3 * 24 and spot.footprint[7:10, 3:27].all()  # exactly the ink, not the white
    assert np.allclose(bubble.values[10, 10], np.subtract((250, 240, 245), SKIN))


@pytest.mark.parametrize("which", [0, 1])
def test_paste_changes_only_the_footprint_and_blends_as_stated(template_folder, which):
    template = load_templates(template_folder)[which]
    image = skin_image()
    values = transform(template.values, 1.0, neutral=template.neutral)
    out, footprint = paste(image, values, template.blend, top=30, left=-5)  # partly outside the frame: clipped
    assert footprint.any() and not footprint[:30].any()
    assert np.array_equal(out[~footprint], image[~footprint])
    ys, xs = np.nonzero(footprint)
    part = values[ys - 30, xs + 5]
    expected = image[ys, xs] + part if template.blend == "add" else image[ys, xs] * part
    assert np.array_equal(out[ys, xs], np.clip(np.round(expected), 0, 255).astype(np.uint8))


def test_the_inserter_is_reproducible_from_its_seed_and_respects_its_footprint(template_folder):
    inserter = ArtefactInserter("bubble", template_folder)
    image = skin_image(seed=1)
    first, footprint = inserter(image, None, 7)
    again, same_footprint = inserter(image, None, np.random.default_rng(7))
    assert np.array_equal(first, again) and np.array_equal(footprint, same_footprint)
    assert footprint.any() and np.array_equal(first[~footprint], image[~footprint])
    others = [inserter(image, None, seed)[0] for seed in (8, 9, 10)]
    assert any(not np.array_equal(first, other) for other in others)
    assert np.array_equal(image, skin_image(seed=1))  # the input is never changed in place


def test_a_known_lesion_keeps_scattered_artefacts_off_it(template_folder):
    inserter = ArtefactInserter("marking", template_folder)
    image = skin_image(96, 96)
    lesion = np.zeros(image.shape[:2], bool)
    lesion[28:68, 28:68] = True
    on_lesion = [(fp & lesion).sum() / max(fp.sum(), 1) for fp in (inserter(image, lesion, seed)[1] for seed in range(20))]
    assert np.mean(on_lesion) < lesion.mean()  # a uniform placement would put about the lesion's share on it


def test_clear_errors_for_a_bad_folder_kind_or_image(template_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no artefact templates at .*meta.json"):
        load_templates(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown artefact kind 'stain'"):
        ArtefactInserter("stain", template_folder)
    with pytest.raises(ValueError, match="describes no template of the kinds \[.ruler.\]"):
        ArtefactInserter("ruler", template_folder)
    with pytest.raises(ValueError, match="uint8 RGB"):
        ArtefactInserter("bubble", template_folder)(np.zeros((8, 8), np.uint8))
    (template_folder / "src" / "ISIC_2" / "ISIC_2_03.png").unlink()
    with pytest.raises(FileNotFoundError, match="holds no template PNG"):
        load_templates(template_folder)


@pytest.mark.parametrize("kind", ["bubble", "marking", "ruler"])
def test_the_real_templates_insert_each_kind(kind):
    folder = templates_folder()
    if not (folder / "meta.json").is_file():
        pytest.skip(f"Katsch et al.'s artefact templates not found at {folder} (they live beside the repository, not in it)")
    inserter = ArtefactInserter(kind)
    image = skin_image(256, 256)
    lesion = np.zeros(image.shape[:2], bool)
    lesion[90:170, 80:180] = True
    out, footprint = inserter(image, lesion, 3)
    assert 0 < footprint.mean() < 0.5
    assert np.array_equal(out[~footprint], image[~footprint])
    assert np.abs(out[footprint].astype(int) - image[footprint].astype(int)).max() > 20  # visibly there
