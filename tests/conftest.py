"""Shared fixtures: the real tables beside the repository, and tiny generated image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cli_predictions(images: dict[str, Image.Image], folder: Path, model: str | Path) -> pd.DataFrame:
    """``dermfuse predict`` on ``images`` (name → PIL image), saved as PNGs in ``folder``, with ``model``: its
    ``predictions.csv`` (written to ``folder/out``), one row per image name."""
    from dermfuse.cli import main

    for name, image in images.items():
        image.save(folder / f"{name}.png")
    assert main(["predict", str(folder), "--model", str(model), "--out", str(folder / "out")]) == 0
    return pd.read_csv(folder / "out" / "predictions.csv").set_index("image")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real label/metadata tables, no images); the test is skipped without it."""
    if not (SHARED_DATA / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real dataset tables not found at {SHARED_DATA} (they live beside the repository, not in it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_images() -> Path:
    """``../shared/data/real`` (140 PH2 images with masks); the test is skipped without it."""
    folder = SHARED_DATA / "real"
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"real PH2 images not found at {folder} (they live beside the repository, not in it)")
    return folder


def ham10000_lesion_pair(shared_data: Path, label: str = "mel") -> tuple[str, str]:
    """(later, earlier) image paths of one HAM10000 lesion (``lesion_id``) of ``label`` with at least two images in the
    shared copy: the first such lesion by id, its first two images by id (the first read as the earlier)."""
    import pandas as pd

    table = pd.read_csv(shared_data / "HAM10000_metadata.csv")
    folder = shared_data / "HAM10000" / "HAM10000_images"
    table = table[[(folder / f"{i}.jpg").is_file() for i in table["image_id"]]]
    lesion_id = sorted(table[table["dx"] == label].groupby("lesion_id").filter(lambda g: len(g) >= 2)["lesion_id"])[0]
    earlier, later = sorted(table[table["lesion_id"] == lesion_id]["image_id"])[:2]
    return str(folder / f"{later}.jpg"), str(folder / f"{earlier}.jpg")


def _save_image(path, size=(24, 16), colour=(180, 120, 90), mask_box=None, **save_options) -> Path:
    """Write a small image file (format from the suffix); with ``mask_box`` = (x0, y0, x1, y1) a 0/255 mask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask_box is not None:
        pixels = np.zeros((size[1], size[0]), np.uint8)
        x0, y0, x1, y1 = mask_box
        pixels[y0:y1, x0:x1] = 255
        Image.fromarray(pixels).save(path, **save_options)
    else:
        Image.new("RGB", size, colour).save(path, **save_options)
    return path


@pytest.fixture
def save_image():
    """``save_image(path, size=(w, h), colour=..., mask_box=None)`` writes a tiny image or mask file."""
    return _save_image


def colour_bars_in(pixels: np.ndarray) -> int:
    """How many heatmap colour bars a picture (H, W, 3 or 4) shows side by side: the most runs, in one row,
    of at least 40 pixels that walk the heat colour map from its low end (dark blue) to its high end (dark
    red) without turning back. A heatmap blended over an image never does that; a colour bar always does."""
    from dermfuse.render import heat_colours

    lut = heat_colours(np.linspace(0, 1, 64)[None])[0].astype(np.int32)  # (64, 3)
    most = 0
    for row in np.asarray(pixels)[..., :3].astype(np.int32):
        distance = ((row[:, None, :] - lut[None]) ** 2).sum(-1)  # (W, 64)
        nearest, close = distance.argmin(1), distance.min(1) <= 3 * 12**2
        runs, start = 0, None
        for x in range(len(row) + 1):
            if x < len(row) and close[x]:
                start = x if start is None else start
                continue
            if start is not None and x - start >= 40:
                walk = nearest[start:x]
                runs += walk[0] <= 8 and walk[-1] >= 55 and (np.diff(walk) >= -1).all()
            start = None
        most = max(most, runs)
    return most


@pytest.fixture(scope="module")
def shipped_app():
    """The app on the shipped default model, served for one test module (the browser and API tests share it)."""
    from app_harness import running_app
    from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL

    with running_app(str(CHECKPOINTS / DEFAULT_MODEL)) as app:
        yield app


@pytest.fixture(scope="session")
def shipped_catalog():
    """The app's model catalog on the shipped default model, in this process (the teaching-view tests call its
    callbacks directly). The weights are committed: their loss fails these tests rather than skipping them."""
    from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
    from dermfuse.ui import ModelCatalog

    return ModelCatalog.open(str(CHECKPOINTS / DEFAULT_MODEL))
