"""The real app, started as ``python app.py`` on a free local port, driven by ``gradio_client`` and a browser.

One server for the module (start-up is the slow part); it is always stopped at the end. The full
8 × 10 load test is ``benchmarks/bench_app_load.py``; here a small one checks that concurrent
clients all get their own, correct answers.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from dermfuse.data.phantom import generate_phantom
from dermfuse.pipeline import DermFusePipeline
from dermfuse.render import TITLES
from dermfuse.ui import examples
from app_harness import app_model, running_app

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
REAL_MODEL = "dermfuse-tiny-ph2-melanoma"  # the second shipped checkpoint (python -m train real)


@pytest.fixture(scope="module")
def model_source(tmp_path_factory):
    return app_model(tmp_path_factory.mktemp("standin"))


@pytest.fixture(scope="module")
def server(model_source):
    with running_app(model_source) as app:
        yield app


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def pipeline(model_source):
    return DermFusePipeline.from_pretrained(model_source)


@pytest.fixture(scope="module")
def example_files(tmp_path_factory):
    return examples._load_or_make(tmp_path_factory.mktemp("examples"))


def predict(client, path, age=None, sex="unknown", site="unknown") -> dict:
    return client.predict(handle_file(str(path)), age, sex, site, api_name="/predict")


def test_predict_returns_the_pipelines_probabilities(client, pipeline, example_files):
    for example in example_files[::3]:
        result = predict(client, example.path, example.age, example.sex, example.site)
        direct = pipeline(example.path, example.age, example.sex, example.site, explain=False)
        np.testing.assert_allclose(result["probabilities"], direct.probabilities, atol=1e-6)
        np.testing.assert_allclose(result["probabilities_without_metadata"], direct.probabilities_without_metadata,
                                   atol=1e-6)
        assert result["classes"] == direct.classes and result["top_class"] == direct.top_class
        assert result["metadata"]["sex"] == example.sex and result["model"]["revision"]


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width × height and which holds no pixels (a decompression-bomb probe)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, example_files):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("this is not a picture")
    whole = folder / "whole.jpg"
    Image.open(example_files[0].path).save(whole, quality=90)
    (folder / "truncated.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    Image.new("RGB", (1, 1), (120, 80, 60)).save(folder / "one_pixel.png")
    png_header_only(folder / "bomb.png", 30000, 30000)
    return folder


@pytest.mark.parametrize("file, age, site, message", [
    (None, None, "unknown", "No image: upload a dermoscopy image"),
    ("empty.jpg", None, "unknown", "'empty.jpg' is empty (0 bytes)"),
    ("notes.txt", None, "unknown", "'notes.txt' is not an image file PIL can read"),
    ("truncated.jpg", None, "unknown", "'truncated.jpg' could not be decoded"),
    ("one_pixel.png", None, "unknown", "'one_pixel.png' is 1×1 pixels, below the minimum side"),
    ("bomb.png", None, "unknown", "'bomb.png' is refused as a possible decompression bomb"),
    ("{good}", -5, "unknown", "age -5 is impossible"),
    ("{good}", 300, "unknown", "age 300 is impossible"),
    ("{good}", 40, "left elbow", "unknown lesion site 'left elbow'"),
])
def test_bad_input_gets_a_clear_message_and_the_next_request_works(client, bad_files, example_files, file, age,
                                                                     site, message):
    good = example_files[1].path
    path = good if file == "{good}" else bad_files / file if file else None
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(path)) if path else None, age, "unknown", site, api_name="/predict")
    text = str(caught.value)
    assert message in text, text
    assert "Traceback" not in text and "/tmp/gradio" not in text  # no stack trace, no server paths
    assert abs(sum(predict(client, good)["probabilities"]) - 1) < 1e-5


def test_odd_but_valid_images_are_diagnosed(client, tmp_path, example_files):
    phantom = generate_phantom("mel", seed=5, size=512)
    rgba = np.dstack([phantom.image, np.full(phantom.image.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    # 40 megapixels: under dermfuse's 50-MP guard and, as a JPEG, under the 30 MB upload limit
    Image.fromarray(cv2.resize(phantom.image, (7750, 5200))).save(tmp_path / "forty_mp.jpg", quality=90)
    for name in ("alpha.png", "forty_mp.jpg"):
        result = predict(client, tmp_path / name, 50, "female", "back")
        assert abs(sum(result["probabilities"]) - 1) < 1e-5 and result["metadata"]["site"] == "posterior torso"


def test_an_upload_over_the_size_limit_is_refused_with_a_message(client, tmp_path):
    big = tmp_path / "huge.png"
    big.write_bytes(os.urandom(31 * 2**20))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        predict(client, big)


def test_diagnose_and_report_endpoints(server, example_files):
    client = Client(server.url, verbose=False)  # its own session: /report reads the session's case
    example = example_files[8]
    outputs = client.predict(handle_file(example.path), example.age, example.sex, example.site, None, True, True,
                             True, api_name="/diagnose")
    outline, lesion, heat_image, heat_lesion, scores, warnings, reading, result, gates = outputs[:9]
    for picture in (outline, lesion, heat_image, heat_lesion):
        assert Path(picture).is_file()
    chart = scores["value"]  # with the chart's title, which points to the warnings (the demo model always has one)
    assert chart["label"] and len(chart["confidences"]) == 5 and "warning below the pictures" in scores["label"]
    assert "synthetic phantom" in warnings and "What the metadata changed" in reading
    assert len(gates["value"]) == 4 and result["top_class"] in result["classes"]
    png, pdf, json_file = (update["value"] for update in client.predict(api_name="/report"))  # shown buttons
    with Image.open(png) as sheet:
        assert sheet.width > 800
    assert Path(pdf).read_bytes()[:5] == b"%PDF-" and Path(json_file).stat().st_size > 500


def test_concurrent_clients_each_get_their_own_answer(server, client, example_files):
    chosen = example_files[::4]
    expected = {e.path: predict(client, e.path, e.age, e.sex, e.site)["probabilities"] for e in chosen}

    def session(offset: int) -> list[bool]:
        own = Client(server.url, verbose=False)
        answers = []
        for i in range(3):
            e = chosen[(offset + i) % len(chosen)]
            answers.append(np.allclose(predict(own, e.path, e.age, e.sex, e.site)["probabilities"], expected[e.path],
                                       atol=1e-6))
        return answers

    with ThreadPoolExecutor(3) as pool:
        results = [answer for answers in pool.map(session, range(3)) for answer in answers]
    assert results == [True] * 9


def find_chromium(path: str = CHROMIUM) -> str:
    """The Chromium the browser tests drive (Debian's, through Playwright).

    The README says ``make test`` is what CI runs, so a missing browser must not pass unnoticed:
    under CI (``$CI`` set, as ``.ci/run`` and hosted CI services do) it fails; elsewhere the skip
    says what was not tested and how to install what it needs.
    """
    if shutil.which(path):
        return path
    message = (f"BROWSER TEST NOT RUN: {path} is missing. Install it with `apt-get install chromium` "
               "(Debian/Ubuntu; .ci/run does this), then rerun")
    if os.environ.get("CI"):
        pytest.fail(f"{message}. CI must run the browser test.", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> str:
    return find_chromium()


def test_a_missing_browser_fails_under_ci_and_skips_loudly_elsewhere(monkeypatch, tmp_path):
    missing = str(tmp_path / "chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        find_chromium(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"BROWSER TEST NOT RUN: .* `apt-get install chromium`"):
        find_chromium(missing)


def test_browser_diagnoses_an_uploaded_example(chromium, server, client, bad_files, example_files, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    example = next(e for e in example_files if e.label == "mel")
    expected_top = predict(client, example.path, 55, "male", "posterior torso")["top_diagnosis"].split(" (")[0]
    screenshot = Path(os.environ.get("DERMFUSE_SCREENSHOT") or tmp_path / "app_screenshot.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(server.url)
            page.locator("#upload input[type=file]").set_input_files(example.path)
            # Untouched age, sex and site are unknown: the result says no patient data was used (age null, not 0).
            expect(page.locator("#age input")).to_have_value("")
            page.locator("#diagnose").click()
            expect(page.locator("#reading")).to_contain_text("none: age, sex and site unknown", timeout=30_000)
            page.locator("#age input").fill("55")
            page.locator("#sex").get_by_text("male", exact=True).click()
            page.locator("#site input").fill("posterior torso")
            page.keyboard.press("Enter")
            page.locator("#diagnose").click()
            for shown in ("#outline img", "#heat-image img", "#heat-lesion img", "#lesion img"):
                expect(page.locator(shown)).to_be_visible(timeout=30_000)
            # Each picture's title in full on a line of its own above it, none of them cut short over the picture
            titles = page.locator(".block.picture-title")
            expect(titles).to_have_text([TITLES[key] for key in ("outline", "lesion", "heat_image", "heat_lesion")])
            for i, shown in enumerate(("#outline img", "#lesion img", "#heat-image img", "#heat-lesion img")):
                title, image = titles.nth(i).bounding_box(), page.locator(shown).bounding_box()
                assert title["y"] + title["height"] <= image["y"] + 1, shown
            expect(page.locator("#scores")).to_contain_text(expected_top)
            expect(page.locator("#scores")).to_contain_text("%")
            # The chart's title points to the warnings (the demo model always has one), on a line of its own over it
            expect(page.locator("#scores")).to_contain_text("warning below the pictures: read it first")
            title = page.locator('#scores > label[data-testid="block-label"]').bounding_box()
            chart = page.locator('#scores [data-testid="label-output-value"]').bounding_box()
            assert title["y"] + title["height"] <= chart["y"] + 1
            expect(page.locator("#reading")).to_contain_text("What the metadata changed")
            expect(page.locator("#warnings")).to_contain_text("synthetic phantom")
            expect(page.locator("#download-pdf")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(screenshot), full_page=True)

            # Switch to the real-image melanoma-vs-nevus model: its banner says what it learned from, and the
            # case is diagnosed again with it, without pressing Diagnose: its two classes only, none of the
            # previous model's warnings, no metadata effects (it learned from none), a new report.
            page.locator("#model input").fill(REAL_MODEL)
            page.keyboard.press("Enter")
            expect(page.locator("#banner")).to_contain_text("trained on real dermoscopy images (PH2)", timeout=60_000)
            expect(page.locator("#scores")).to_contain_text("Melanocytic nevus (nv)", timeout=60_000)
            expect(page.locator("#scores")).to_contain_text("Melanoma (mel)")
            expect(page.locator("#scores")).not_to_contain_text("Basal cell carcinoma")
            expect(page.locator("#warnings")).not_to_contain_text("synthetic phantom")
            expect(page.locator("#reading")).to_contain_text("trained without patient metadata")
            expect(page.locator("#reading")).not_to_contain_text("What the metadata changed")
            expect(page.locator("#download-pdf")).to_be_visible(timeout=30_000)

            toasts = page.locator("[data-testid='toast-body']")
            page.locator("#upload input[type=file]").set_input_files(str(bad_files / "truncated.jpg"))
            page.locator("#diagnose").click()
            expect(toasts.last).to_contain_text("'truncated.jpg' could not be decoded", timeout=20_000)
            page.reload()  # a fresh page: nothing uploaded
            page.locator("#diagnose").click()
            expect(toasts.last).to_contain_text("No image: upload a dermoscopy image", timeout=20_000)
            page.locator("#model input").fill(REAL_MODEL)  # no case shown: nothing to diagnose again
            page.keyboard.press("Enter")
            expect(page.locator("#warnings")).to_contain_text("Press Diagnose to use it", timeout=30_000)
        finally:
            browser.close()
    with Image.open(screenshot) as shot:
        assert shot.width == 1366 and shot.height > 900


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)")
def test_browser_picks_a_real_example_and_a_teaching_phantom(server):
    """The galleries' select events reach their callbacks (gradio fills gr.SelectData by type hint only)."""
    from playwright.sync_api import expect, sync_playwright

    first = examples.real_examples()[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(server.url)
            expect(page.locator("#examples")).to_contain_text(first.caption, timeout=30_000)
            page.locator("#examples button[aria-label^=Thumbnail]").first.click()
            expect(page.locator("#truth")).to_contain_text(f"{first.isic_id} (", timeout=20_000)
            expect(page.locator("#truth")).to_contain_text("licence CC0")
            expect(page.locator("#upload img")).to_be_visible()
            page.get_by_text("Teaching view: switch parts of the model off").click()
            page.locator("#phantoms button[aria-label^=Thumbnail]").nth(8).click()
            expect(page.locator("#truth")).to_contain_text("Ground truth of this phantom", timeout=20_000)
            expect(page.locator("#model input")).to_have_value("dermfuse-tiny-phantom")
        finally:
            browser.close()
