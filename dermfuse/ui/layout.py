"""The page: inputs on the left, results on the right, the reading and downloads below, examples last.

The image comes from a file, the clipboard or the camera (a phone's rear camera by default); the page
works at phone width (columns stack, wide tables scroll inside their box).

The example gallery holds real CC0 dermoscopy images (ISIC id, diagnosis, licence); the synthetic
phantoms sit in the teaching view with the teaching model they were made for.

``build_demo(catalog)`` returns the ``gr.Blocks`` with its queue set; ``LAUNCH_OPTIONS`` holds what
Gradio 6 takes at ``launch()`` (theme, CSS, upload limit, error policy). Every event has an
``api_name``; ``/predict`` is an API-only endpoint (no trigger on the page) that returns the JSON
result, so ``gradio_client`` users get one plain answer instead of the page's many outputs; ``/compare``
(API-only too) adds the follow-up against a previous image of the same lesion. Every
component has a ``label``, even where the page hides it: Gradio names API inputs and outputs by it
(an unlabelled one is ``value_<id>`` in ``view_api()``). Changing the model clears the shown results at
once and diagnoses the shown case again with the new model, so one model's scores, warnings and
downloads never stand under another's banner.

Two vCPUs: one diagnosis keeps both cores busy (the pipeline serialises its own calls), so at most
two run at once — one in the model while the other loads its image or draws its pictures — and up
to ``QUEUE_SIZE`` more wait in line with their place shown.
"""

from __future__ import annotations

from functools import partial

import gradio as gr

from .. import vocab
from ..data.transforms import ORIENTATIONS
from ..render import TITLES
from ..sources import DEMO_MODEL
from . import callbacks, views
from .catalog import ModelCatalog

PIPELINE_CONCURRENCY = 2
QUEUE_SIZE = 64
MAX_UPLOAD = "30mb"  # a dermatoscope JPEG is a few MB; a 40-MP JPEG fits, a 40-MP PNG does not
CSS = """
#banner {border-left: 6px solid #c0392b; padding: 0.2em 0.9em; background: var(--background-fill-secondary);}
#truth {min-height: 0;}
#examples .grid-wrap, #phantoms .grid-wrap, #gates .grid-wrap {height: auto !important; min-height: 0 !important;}
#examples .caption-label {white-space: normal; max-width: 92%;}
#reading table {display: block; overflow-x: auto;}
#reading th, #reading td {word-break: normal; overflow-wrap: normal; padding: 4px 8px;}
#reading td:first-child {min-width: 12em;}
#scores > label[data-testid="block-label"] {position: static; width: fit-content; max-width: 100%; white-space: normal;}
.picture-title p {margin: 0; font-weight: 600; font-size: var(--text-md); line-height: 1.25;}
.result-picture .image-container img {width: 100%; height: 100%; object-fit: contain;}
@media (max-width: 640px) {.result-picture {height: auto !important;} .result-picture .image-container img {height: auto;}}
"""
# A phone's rear camera where the browser lets the page choose (``facingMode`` is a preference, not a demand,
# so a laptop's only camera still opens); not mirrored, so the photo shows the skin as it is. Browsers open a
# camera only on a secure page: https (a Hugging Face Space) or localhost.
CAMERA = gr.WebcamOptions(mirror=False, constraints={"video": {"facingMode": {"ideal": "environment"},
                                                               "width": {"ideal": 1920}, "height": {"ideal": 1440}}})
LAUNCH_OPTIONS = dict(
    theme=gr.themes.Soft(primary_hue="indigo"),  # local fonts only: no request leaves the page
    css=CSS,
    max_file_size=MAX_UPLOAD,
    show_error=False,  # every user-facing failure is a gr.Error with its own message; no internals leak
    footer_links=["api", "gradio"],
)


def picture(label: str, elem_id: str) -> gr.Image:
    """A result picture under its title: two fit side by side on a phone. The title is a line of its own, which wraps
    (Gradio's label floats over the picture and is cut short by its buttons), and a small picture (a small lesion's
    crop) is scaled up to fill its box like the others."""
    with gr.Column(min_width=140, variant="panel"):
        gr.Markdown(label, elem_classes=["picture-title"])
        return gr.Image(label=label, show_label=False, height=260, interactive=False, elem_id=elem_id,
                        elem_classes=["result-picture"])


def build_demo(catalog: ModelCatalog) -> gr.Blocks:
    """The dermfuse app for the models in ``catalog``."""
    with gr.Blocks(title="dermfuse: explainable skin-lesion diagnosis", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# dermfuse · explainable skin-lesion diagnosis")
        banner = gr.Markdown(catalog.describe(catalog.default), label="Model in use", show_label=False, elem_id="banner")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                image = gr.Image(label="Dermoscopy image", type="filepath", sources=["upload", "webcam", "clipboard"],
                                 webcam_options=CAMERA, height=300, elem_id="upload")
                truth = gr.Markdown(label="Ground truth of the example", show_label=False, elem_id="truth")
                previous = gr.Image(label="Previous image of the same lesion (optional: compares the two)", type="filepath",
                                    sources=["upload", "clipboard"], height=160, elem_id="previous")
                with gr.Row():
                    # A text box, not gr.Number: Gradio 6's number box shows and sends 0 when left empty, and
                    # age 0 is a real age that moves the scores. Blank here reaches the pipeline as unknown.
                    age = gr.Textbox(label="Age in years (blank = unknown)", value="", placeholder="unknown",
                                     max_lines=1, min_width=120, elem_id="age")
                    sex = gr.Radio(list(vocab.SEXES), value=vocab.UNKNOWN, label="Sex", min_width=160, elem_id="sex")
                site = gr.Dropdown(list(vocab.SITES), value=vocab.UNKNOWN, label="Lesion site", allow_custom_value=True,
                                   elem_id="site")
                model = gr.Dropdown(catalog.names, value=catalog.default, label="Model",
                                    interactive=len(catalog.names) > 1, elem_id="model")
                button = gr.Button("Diagnose", variant="primary", elem_id="diagnose")
                with gr.Accordion("Teaching view: switch parts of the model off", open=False):
                    use_metadata = gr.Checkbox(True, label="Use the metadata (age, sex, site)")
                    lesion_stream = gr.Checkbox(True, label="Use the lesion stream")
                    attention = gr.Checkbox(False, label="Show the segmenter's attention gates")
                    artefact = gr.Dropdown(list(callbacks.ARTEFACTS), value="none", label="Paste a real artefact into the image",
                                           info="Ink, a ruler or air bubbles cut from real images (Katsch, Rinner & Tschandl "
                                                "2022): do the scores and the heat move to it?" if callbacks.artefacts_available()
                                           else "Needs the artefact templates (not shipped): set DERMFUSE_ARTEFACTS.",
                                           interactive=callbacks.artefacts_available(), elem_id="artefact")
                    orientation = gr.Dropdown(list(ORIENTATIONS), value=callbacks.AS_IT_IS, label="Turn or mirror the image",
                                              info="Dermoscopy has no up: do the scores and the heat stay when the same "
                                                   "lesion is held another way?", elem_id="orientation")
                    gr.Markdown(f"**Synthetic phantoms** with their ground truth, for the teaching model "
                                f"`{DEMO_MODEL}`, which learned from them: picking one chooses it.")
                    phantoms = gr.Gallery(label="Phantom examples", columns=4, allow_preview=False, show_label=False, elem_id="phantoms")
            with gr.Column(scale=3, min_width=300):
                scores = gr.Label(num_top_classes=5, label=views.SCORES_TITLE, elem_id="scores")
                with gr.Row():
                    outlined = picture(TITLES["outline"], "outline")
                    lesion = picture(TITLES["lesion"], "lesion")
                with gr.Row():
                    heat_image = picture(TITLES["heat_image"], "heat-image")
                    heat_lesion = picture(TITLES["heat_lesion"], "heat-lesion")
        warnings = gr.Markdown(label="Warnings", show_label=False, elem_id="warnings")
        gates = gr.Gallery(label="Segmenter attention gates (bright = kept)", columns=4, visible=False,
                           elem_id="gates")
        reading = gr.Markdown(label="Reading: where the model looked, lesion measurements, metadata",
                              show_label=False, elem_id="reading")
        abcd = gr.Markdown(label="ABCD rule of dermoscopy: criteria, how each was measured, source", show_label=False,
                           elem_id="abcd")
        followup_text = gr.Markdown(label="Follow-up: change since the previous image", show_label=False, elem_id="followup")
        followup_picture = gr.Image(label="Follow-up: previous image aligned (left) and current (right), previous outline "
                                    "orange, current green", interactive=False, visible=False, elem_id="followup-picture")
        with gr.Row():
            downloads = [gr.DownloadButton(f"Download the case ({kind})", visible=False, elem_id=f"download-{key}")
                         for key, kind in (("png", "PNG sheet"), ("pdf", "PDF sheet"), ("json", "JSON"))]
        with gr.Accordion("JSON result", open=False):
            result = gr.JSON(label="Result", elem_id="result")
        with gr.Accordion("Examples: real dermoscopy images from the ISIC archive, CC0, with their diagnosis "
                          "(pick one, then Diagnose)", open=True):
            gallery = gr.Gallery(label="Examples", columns=6, allow_preview=False, show_label=False, elem_id="examples")
        case = gr.State(time_to_live=3600)

        inputs = [image, age, sex, site, model]
        switches = [use_metadata, lesion_stream, attention]
        results = [outlined, lesion, heat_image, heat_lesion, scores, warnings, reading, result, gates, case,
                   abcd, followup_text, followup_picture, *downloads]
        # preprocess=False: the upload reaches the callback as its file (gr.Image would first open it with
        # PIL, whose errors and laxer size limit would pre-empt dermfuse's loader); the callbacks check
        # every other input themselves.
        pipeline_events = dict(concurrency_limit=PIPELINE_CONCURRENCY, concurrency_id="pipeline", preprocess=False)
        gr.on(
            [button.click, use_metadata.input, lesion_stream.input, attention.input, artefact.input, orientation.input],
            partial(callbacks.diagnose, catalog),
            inputs + switches + [previous, artefact, orientation],
            results,
            api_name="diagnose",
            api_description=callbacks.diagnose.__doc__,
            **pipeline_events,
        ).success(callbacks.make_report, case, downloads, api_name="report")
        gr.on([], partial(callbacks.predict, catalog), inputs, result, api_name="predict",
              api_description=callbacks.predict.__doc__, **pipeline_events)
        gr.on([], partial(callbacks.compare_images, catalog), [image, previous, age, sex, site, model], result,
              api_name="compare", api_description=callbacks.compare_images.__doc__, **pipeline_events)
        # Gradio finds gr.SelectData by the parameter's type hint, which functools.partial hides: small wrappers.
        def pick_example(model: str | None, event: gr.SelectData):
            return callbacks.pick_example(catalog, model, event)

        def pick_phantom(event: gr.SelectData):
            return callbacks.pick_phantom(catalog, event)

        gallery.select(pick_example, model, [image, age, sex, site, truth, model], api_name="pick_example")
        phantoms.select(pick_phantom, None, [image, age, sex, site, truth, model], api_name="pick_phantom")
        gr.on([image.upload, image.clear], callbacks.forget_truth, None, truth, api_name="forget_truth")
        # Left out of the API docs: the page's own event; API users name the model in /predict or /diagnose.
        model.change(partial(callbacks.switch_model, catalog),
                     [model, case, image, age, sex, site, *switches, previous, artefact, orientation], [banner, *results],
                     api_name="switch_model", api_visibility="undocumented", **pipeline_events)
        gr.on([], partial(callbacks.describe_model, catalog), model, banner, api_name="describe_model",
              api_description=callbacks.describe_model.__doc__)
        demo.load(callbacks.example_gallery, None, gallery, api_name="examples")
        demo.load(callbacks.phantom_gallery, None, phantoms, api_name="phantoms")
    demo.queue(default_concurrency_limit=PIPELINE_CONCURRENCY, max_size=QUEUE_SIZE)
    return demo
