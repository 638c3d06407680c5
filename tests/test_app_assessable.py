"""The shipped default model in the real app: images it cannot judge come back *not assessable*.

Through the API (``gradio_client``) and a real browser: a photo that is not dermoscopy, a blank
image, a single-colour image and a random photo each get the reasons and no top class or score
chart; a real dermoscopy example (CC0, ``examples/``) gets its scores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import sklearn.datasets
from gradio_client import Client, handle_file
from PIL import Image, ImageFilter

from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from dermfuse.ui import examples

DEFAULT = CHECKPOINTS / DEFAULT_MODEL
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DEFAULT / "config.json").is_file(), reason=f"{DEFAULT} is not in this copy"),
]


@pytest.fixture(scope="module")
def client(shipped_app):
    return Client(shipped_app.url, verbose=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("not-dermoscopy")
    pictures = {
        "photo": skimage.data.astronaut(),  # a person in a space suit (the gate was fitted with it among its negatives;
        # its numbers on pictures it never saw are the cross-fitted ones in docs/results/gate.json)
        "blank": np.full((480, 640, 3), 255, np.uint8),
        "single_colour": np.full((300, 400, 3), (150, 40, 60), np.uint8),
        "random_photo": sklearn.datasets.load_sample_images().images[1],  # a flower
    }
    paths = {}
    for name, picture in pictures.items():
        paths[name] = folder / f"{name}.png"
        Image.fromarray(picture).save(paths[name])
    return paths


@pytest.mark.parametrize("name", ["photo", "blank", "single_colour", "random_photo"])
def test_the_api_says_not_assessable_with_a_reason_and_no_top_class(client, images, name):
    result = client.predict(handle_file(str(images[name])), None, "unknown", "unknown", api_name="/predict")
    assert result["assessable"] is False and result["reasons"], result["reasons"]
    assert result["scores_withheld"] and result["top_class"] is None and result["probabilities"] is None


@pytest.mark.parametrize("kind, reason", [("thumbnail", "The image is too small to judge: 100×75 pixels"),
                                          ("blurred", "The image is out of focus (or washed out): its sharpness is ")])
def test_the_api_refuses_a_thumbnail_or_a_blurred_copy_of_real_dermoscopy(client, tmp_path, kind, reason):
    """The shipped model's least side and sharpness (experiments/resolution.py, experiments/focus.py) in the app."""
    example = Image.open(examples.real_examples()[0].path).convert("RGB")
    if kind == "thumbnail":
        changed = example.resize((100, 75), Image.LANCZOS)
    else:
        changed = example.resize((256, 192), Image.LANCZOS).filter(ImageFilter.GaussianBlur(3))
    changed.save(tmp_path / f"{kind}.png")
    result = client.predict(handle_file(str(tmp_path / f"{kind}.png")), None, "unknown", "unknown", api_name="/predict")
    assert result["assessable"] is False and result["reasons"][0].startswith(reason), result["reasons"]
    assert result["scores_withheld"] and result["top_class"] is None and result["probabilities"] is None


def test_the_api_diagnoses_a_real_dermoscopy_example(client):
    example = examples.real_examples()[0]
    result = client.predict(handle_file(example.path), None, "unknown", "unknown", api_name="/predict")
    assert result["assessable"] is True and result["reasons"] == []
    assert result["top_class"] in result["classes"] and abs(sum(result["probabilities"]) - 1) < 1e-4


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)")
def test_the_browser_shows_no_diagnosis_for_a_photo_and_scores_for_dermoscopy(shipped_app, images):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            for name in ("photo", "blank", "single_colour", "random_photo"):
                page.goto(shipped_app.url)  # a fresh page per image: nothing of the last one can pass for this one's
                page.locator("#upload input[type=file]").set_input_files(str(images[name]))
                page.locator("#diagnose").click()
                expect(page.locator("#warnings")).to_contain_text("Not assessable: no diagnosis is shown", timeout=30_000)
                expect(page.locator("#reading")).to_contain_text("Withheld")
                expect(page.locator("#scores")).not_to_contain_text("%")
            page.goto(shipped_app.url)
            page.locator("#upload input[type=file]").set_input_files(examples.real_examples()[0].path)
            page.locator("#diagnose").click()
            expect(page.locator("#scores")).to_contain_text("%", timeout=30_000)
            expect(page.locator("#warnings")).not_to_contain_text("Not assessable")
        finally:
            browser.close()
