"""The follow-up comparison and the ABCD panel in the real app (``app.py`` with the shipped default model).

Two HAM10000 images of one lesion (``lesion_id``) through the ``/compare`` API (``gradio_client``) and through a
real browser: upload both, Diagnose, and the page shows the current scores, the ABCD panel with its source, and
the follow-up table with both outlines; a previous image that is not an image (API) or not assessable (page)
gets words, not an error, and the current diagnosis still shows.
"""

from __future__ import annotations

import shutil

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from conftest import ham10000_lesion_pair

DEFAULT = CHECKPOINTS / DEFAULT_MODEL
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DEFAULT / "config.json").is_file(), reason=f"{DEFAULT} is not in this copy"),
]


@pytest.fixture(scope="module")
def pair(shared_data) -> tuple[str, str]:
    """(current, previous): two HAM10000 images of one melanoma."""
    return ham10000_lesion_pair(shared_data)


def test_the_compare_api_returns_the_diagnosis_and_its_followup(shipped_app, pair):
    client = Client(shipped_app.url, verbose=False)
    result = client.predict(handle_file(pair[0]), handle_file(pair[1]), None, "unknown", "unknown", api_name="/compare")
    assert result["top_class"] in result["classes"] and result["abcd"]["asymmetry"]["score"] in (0, 1, 2)
    change = result["followup"]["change"]
    assert {"area_percent", "greatest_diameter_percent", "asymmetry", "colour_count", "scores"} <= set(change)
    assert result["followup"]["previous"]["image_id"] == pair[1].rsplit("/", 1)[1].removesuffix(".jpg")


def test_the_compare_api_names_a_previous_file_that_is_not_an_image(shipped_app, pair, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    client = Client(shipped_app.url, verbose=False)
    result = client.predict(handle_file(pair[0]), handle_file(str(notes)), None, "unknown", "unknown", api_name="/compare")
    assert result["top_class"] in result["classes"] and result["followup"] is None  # the current diagnosis stands
    assert "'notes.txt' is not an image file" in result["followup_problem"]


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)")
def test_the_browser_compares_two_images_of_one_lesion(shipped_app, pair, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    flat = tmp_path / "flat.png"  # the page's image box takes only images: a flat one is the bad previous image here
    Image.new("RGB", (400, 300), (150, 40, 60)).save(flat)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(shipped_app.url)
            page.locator("#upload input[type=file]").set_input_files(pair[0])
            page.locator("#previous input[type=file]").set_input_files(pair[1])
            page.locator("#diagnose").click()
            expect(page.locator("#scores")).to_contain_text("%", timeout=60_000)
            expect(page.locator("#followup")).to_contain_text("Follow-up: change since the previous image", timeout=30_000)
            expect(page.locator("#followup")).to_contain_text("area (px of the current image)")
            picture = page.locator("#followup-picture img[src*='/file=']")  # the picture, not an icon
            picture.scroll_into_view_if_needed()  # it loads lazily, below the fold
            expect(picture).to_be_visible()
            expect(page.locator("#abcd")).to_contain_text("ABCD rule of dermoscopy")
            expect(page.locator("#abcd")).to_contain_text("Stolz")
            expect(page.locator("#abcd")).to_contain_text("D not computed")

            page.goto(shipped_app.url)
            page.locator("#upload input[type=file]").set_input_files(pair[0])
            page.locator("#previous input[type=file]").set_input_files(str(flat))
            page.locator("#diagnose").click()
            expect(page.locator("#scores")).to_contain_text("%", timeout=60_000)  # the current diagnosis still shows
            expect(page.locator("#followup")).to_contain_text("No comparison", timeout=30_000)
            expect(page.locator("#followup")).to_contain_text("The previous image is not assessable")
        finally:
            browser.close()
