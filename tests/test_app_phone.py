"""The app on a phone, in a real browser (Chromium at 390 × 844, touch, mobile viewport): nothing scrolls
sideways before or after a diagnosis, the columns stack, and the image input offers the camera, asking the
browser for the rear camera (Chromium's fake camera stands in for the phone's, and its frame is diagnosed)."""

from __future__ import annotations

import shutil

import pytest

from app_harness import app_model, running_app
from dermfuse.ui import examples

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]
# Record what the page asks getUserMedia for, then let the fake camera answer.
RECORD_CONSTRAINTS = """
window.__cameraRequests = [];
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.__cameraRequests.push(JSON.parse(JSON.stringify(constraints)));
  return original(constraints);
};
"""
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(app_model(tmp_path_factory.mktemp("model"))) as app:
        yield app


@pytest.fixture
def phone(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        try:
            context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=3)
            context.grant_permissions(["camera"], origin=server.url.rstrip("/"))
            page = context.new_page()
            page.add_init_script(RECORD_CONSTRAINTS)
            page.goto(server.url)
            yield page
        finally:
            browser.close()


def test_at_phone_width_nothing_scrolls_sideways_and_the_columns_stack(phone):
    from playwright.sync_api import expect

    expect(phone.locator("#diagnose")).to_be_visible(timeout=30_000)
    assert phone.evaluate("window.innerWidth") == PHONE["width"]  # laid out at phone width, not zoomed out from a desktop's
    assert phone.evaluate(SIDEWAYS) <= 0
    upload, scores = phone.locator("#upload").bounding_box(), phone.locator("#scores").bounding_box()
    assert scores["y"] >= upload["y"] + upload["height"]  # the results column sits under the inputs
    assert upload["width"] <= PHONE["width"] and upload["x"] >= 0
    phone.locator("#upload input[type=file]").set_input_files(examples.real_examples()[0].path)
    phone.locator("#diagnose").click()
    expect(phone.locator("#reading")).to_contain_text("Skin tone around the lesion", timeout=60_000)
    assert phone.evaluate(SIDEWAYS) <= 0  # the reading's tables scroll inside their box, not the page
    for picture in ("#outline", "#lesion", "#heat-image", "#heat-lesion"):  # each fills its box: no bands of white
        box = phone.locator(picture).bounding_box()
        drawn = phone.locator(f"{picture} img").evaluate("i => i.clientWidth * i.naturalHeight / i.naturalWidth")
        assert box["height"] <= 1.15 * drawn, (picture, box, drawn)
    # The score chart's title wraps at this width (it points to the warnings): on lines of its own, over nothing
    title = phone.locator('#scores > label[data-testid="block-label"]').bounding_box()
    headline = phone.locator('#scores [data-testid="label-output-value"]').bounding_box()
    assert title["height"] > 30 and title["y"] + title["height"] <= headline["y"] + 1, (title, headline)


def test_the_camera_is_offered_asks_for_the_rear_camera_and_its_photo_is_diagnosed(phone):
    from playwright.sync_api import expect

    camera = phone.locator('#upload button[aria-label="Capture from camera"]')
    expect(camera).to_be_visible(timeout=30_000)
    camera.click()
    access = phone.get_by_text("Click to Access Webcam")
    if access.count():
        access.first.click()
    phone.wait_for_function("window.__cameraRequests.length > 0", timeout=15_000)
    video = phone.evaluate("window.__cameraRequests")[0]["video"]
    assert video["facingMode"] == {"ideal": "environment"}
    snap = phone.locator('#upload button[aria-label="capture photo"]')
    expect(snap).to_be_visible(timeout=15_000)
    # Gradio takes the photo only once the video plays; then it uploads it.
    phone.wait_for_function("document.querySelector('#upload video')?.videoWidth > 0", timeout=15_000)
    with phone.expect_response(lambda response: "/upload" in response.url and response.ok, timeout=15_000):
        snap.click()
    phone.locator("#diagnose").click()
    # The fake camera's frame is no dermoscopy image: what matters is that it reached the pipeline and came back.
    expect(phone.locator("#reading")).to_contain_text("Skin tone around the lesion", timeout=60_000)
    assert phone.evaluate(SIDEWAYS) <= 0
