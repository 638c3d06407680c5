"""The app's event functions: each a pure function of its inputs (plus the catalog of loaded models).

Uploads arrive as files (gradio's file dict, unopened) and go, with the other inputs as sent, to the
pipeline, which decodes the image once (EXIF, size guard, clear errors) and checks each metadata
field once; the diagnosis carries the decoded image and the checked values back for display. Here
errors only become words: every failure reaches the user as a ``gr.Error`` with a message that says
what to do — bad input (``ValueError``: unreadable image, impossible age, unknown site) word for
word, naming the user's file rather than the server's copy; anything unexpected as one plain
sentence, with the traceback only in the server log.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import numpy as np

from ..data import load_image
from ..data.artefacts import CITATION, ArtefactInserter, templates_folder
from ..data.transforms import oriented
from ..diagnosis import Diagnosis
from ..followup import FollowUp, check_comparable, compare
from ..sources import DEMO_MODEL
from . import report, views
from .examples import phantom_examples, real_examples
from .catalog import ModelCatalog

log = logging.getLogger(__name__)
REPORTS = Path(tempfile.gettempdir()) / "dermfuse-app" / "reports"
NO_IMAGE = "No image: upload a dermoscopy image (JPEG or PNG) or pick an example first."
# The teaching view's real artefacts (Katsch, Rinner & Tschandl 2022's templates): menu entry → template kind.
ARTEFACTS = {"none": None, "ink marking": "marking", "ruler": "ruler", "air bubbles": "bubble"}
AS_IT_IS = "as it is"  # the teaching view's orientation that leaves the image as uploaded (ORIENTATIONS)


@dataclass(frozen=True)
class ShownCase:
    """What the page shows of one case, at screen size: kept per session for the report."""

    image: np.ndarray
    diagnosis: Diagnosis
    name: str
    followup: FollowUp | None = None
    followup_problem: str | None = None


def user_errors(fn):
    """Turn every exception of ``fn`` into a ``gr.Error`` the page and the API show (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as error:  # bad input, including dermfuse.data.io.ImageLoadError
            raise gr.Error(str(error), print_exception=False) from None
        except MemoryError:
            raise gr.Error("The server ran out of memory on this image: try a smaller one "
                           "(a few megapixels is plenty).", print_exception=False) from None
        except Exception as error:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong inside the app ({type(error).__name__}); the server log has "
                           "the details. Please try again or report it.", print_exception=False) from None

    return wrapper


def uploaded_file(image: dict | str | None) -> tuple[str, str]:
    """(path on the server, the user's file name) of an upload: gradio's file dict, or a plain path."""
    if isinstance(image, dict):
        path = image.get("path")
        name = image.get("orig_name") or (Path(path).name if path else None)
    else:
        path = name = image
    if not path:
        raise ValueError(NO_IMAGE)
    return str(path), Path(name).name


def artefacts_available() -> bool:
    """Whether the artefact templates are here (they are not shipped: CC BY-NC 4.0, see dermfuse/data/artefacts.py)."""
    return (templates_folder() / "meta.json").is_file()


@functools.lru_cache(maxsize=None)
def artefact_inserter(kind: str) -> ArtefactInserter:
    return ArtefactInserter(kind)


def with_artefact(pipeline, path, choice: str) -> np.ndarray:
    """The image at ``path`` (or its pixels) with a real artefact pasted in (teaching view), placed around the lesion
    the segmenter finds; always seed 0, so switching between "none" and an artefact compares the same two pictures."""
    if choice not in ARTEFACTS:
        raise ValueError(f"unknown artefact {choice!r}: choose one of {', '.join(ARTEFACTS)}")
    if not artefacts_available():
        raise ValueError(f"The artefact templates are not installed here (looked in {templates_folder()}): they are "
                         "not shipped with dermfuse. Set DERMFUSE_ARTEFACTS to the folder of Katsch et al.'s templates.")
    image = load_image(path)
    _, masks, _ = pipeline.segment([image])
    pixels, _ = artefact_inserter(ARTEFACTS[choice])(np.asarray(image), masks[0], 0)
    return pixels


def run(catalog: ModelCatalog, image: dict | str | None, age, sex, site, model: str | None,
        use_metadata: bool = True, lesion_stream: bool = True, attention: bool = False, explain: bool = True,
        artefact: str = "none", orientation: str = AS_IT_IS) -> tuple[np.ndarray, Diagnosis]:  # fmt: skip
    """Diagnose the upload with the inputs as sent (the pipeline checks them): (upright RGB image, Diagnosis).

    The result's ``image_id`` is the user's file name without its suffix, as the CLI names its results,
    so the JSON and the case sheet name the same image. Teaching view: with ``orientation`` the image is first turned
    or mirrored (``transforms.ORIENTATIONS``), then with ``artefact`` a real artefact is pasted into it
    (:func:`with_artefact`); the warnings say what was done.
    """
    path, name = uploaded_file(image)
    pipeline = catalog.pipeline(model or catalog.default)
    orientation = orientation or AS_IT_IS
    try:
        source = path if orientation == AS_IT_IS else oriented(load_image(path), orientation)
        source = source if artefact in (None, "", "none") else with_artefact(pipeline, source, artefact)
        diagnosis = pipeline(source, age, sex, site, explain=explain, attention=attention, lesion_stream=lesion_stream,
                             use_metadata=use_metadata, image_id=Path(name).stem)  # fmt: skip
    except ValueError as error:  # name the user's file, not the server's upload folder
        raise ValueError(str(error).replace(path, f"'{name}'")) from None
    if artefact not in (None, "", "none"):
        diagnosis.warnings.insert(0, f"Teaching view: a real {artefact} was pasted into this image (template of {CITATION}). "
                                     "Compare the scores and heatmaps with the artefact set to none.")
    if orientation != AS_IT_IS:
        diagnosis.warnings.insert(0, f"Teaching view: the image was {orientation_words(orientation)} before it was "
                                     "diagnosed: the same lesion, held another way. Compare the scores and heatmaps with "
                                     "the image as it is.")
    return diagnosis.image, diagnosis


def orientation_words(name: str) -> str:
    """How the warning says what was done: "given a quarter turn left", "mirrored left-right"."""
    return name if name.startswith("mirrored") else f"given a {name}"


@user_errors
def predict(catalog: ModelCatalog, image: dict | str | None, age: float | str | None = None,
            sex: str | None = "unknown", site: str | None = "unknown", model: str | None = None) -> dict:
    """Diagnose one image and return the JSON result (the ``/predict`` API). Age in years (a number or its text);
    blank or None means unknown, never 0."""
    _, diagnosis = run(catalog, image, age, sex, site, model)
    return views.result_json(diagnosis)


def follow_up(catalog: ModelCatalog, current: Diagnosis, previous: dict | str | None, age, sex, site, model: str | None,
              use_metadata: bool = True, lesion_stream: bool = True) -> tuple[FollowUp | None, str | None]:
    """The current diagnosis compared with a previous image of the same lesion (diagnosed with the same inputs, no
    heatmaps): (comparison, None), or (None, what is wrong and what to do) for a previous image that cannot be read,
    is not assessable or shows no lesion; (None, None) without one. Never raises for a bad previous image: the
    current diagnosis stands on its own."""
    if previous is None:
        return None, None
    try:
        _, before = run(catalog, previous, age, sex, site, model, use_metadata, lesion_stream, explain=False)
    except ValueError as error:
        return None, (f"the previous image could not be used: {str(error).rstrip('.')}. Upload a JPEG or PNG of the "
                      "same lesion taken earlier, or clear the previous-image box.")
    try:
        check_comparable(before, "previous")
    except ValueError as error:  # the page has one more way out than the command line
        return None, f"{error} Or clear the previous-image box to see the current diagnosis alone."
    try:
        return compare(current, before), None
    except ValueError as error:
        return None, str(error)


@user_errors
def diagnose(catalog: ModelCatalog, image, age, sex, site, model, use_metadata, lesion_stream, attention, previous=None,
             artefact="none", orientation=AS_IT_IS):
    """Everything the page shows for one case (the button, and each teaching switch); with ``previous`` (an earlier
    image of the same lesion) the follow-up comparison too; with ``orientation`` and ``artefact`` (teaching view) the
    image turned or mirrored, and a real artefact pasted into it, first."""
    picture, diagnosis = run(catalog, image, age, sex, site, model, use_metadata, lesion_stream, attention,
                             artefact=artefact, orientation=orientation)
    small_picture, small = views.shrink(picture, diagnosis)
    shown = views.pictures(small_picture, small)
    gates = views.attention_pictures(small)
    comparison, problem = follow_up(catalog, diagnosis, previous, age, sex, site, model, use_metadata, lesion_stream)
    if comparison is not None:  # kept for the report at screen size, as the case's pictures are
        comparison = replace(comparison, picture=views.fit(comparison.picture, 2 * views.DISPLAY_SIDE))
    overlay = None if comparison is None else comparison.picture
    hidden = gr.DownloadButton(visible=False)
    return (
        shown["outline"], shown["lesion"], shown["heat_image"], shown["heat_lesion"],
        gr.Label(value=views.score_label(diagnosis), label=views.scores_title(diagnosis)),
        views.warnings_text(diagnosis), views.reading(diagnosis),
        views.result_json(diagnosis, comparison, problem), gr.Gallery(value=gates or None, visible=bool(gates)),
        ShownCase(small_picture, small, uploaded_file(image)[1], comparison, problem),
        views.abcd_panel(diagnosis), views.followup_panel(comparison, problem),
        gr.Image(value=overlay, visible=overlay is not None), hidden, hidden, hidden,
    )


@user_errors
def compare_images(catalog: ModelCatalog, image: dict | str | None, previous: dict | str | None, age: float | str | None = None,
                   sex: str | None = "unknown", site: str | None = "unknown", model: str | None = None) -> dict:
    """Diagnose the current image and compare it with a previous image of the same lesion (the ``/compare`` API): the
    JSON result with ``followup`` (change in area, diameter, asymmetry, colours and scores) or ``followup_problem``
    (why there is none: the current diagnosis is still returned)."""
    _, diagnosis = run(catalog, image, age, sex, site, model)
    if previous is None:
        return views.result_json(diagnosis, None, "no previous image was given: pass one to compare.")
    return views.result_json(diagnosis, *follow_up(catalog, diagnosis, previous, age, sex, site, model))


def cleared_results(note: str) -> tuple:
    """The diagnose outputs emptied, with ``note`` where the warnings go: nothing of an earlier result stays."""
    hidden = gr.DownloadButton(visible=False)
    return (None, None, None, None, gr.Label(value=None, label=views.SCORES_TITLE), note, "", None,
            gr.Gallery(value=None, visible=False), None,
            "", "", gr.Image(value=None, visible=False), hidden, hidden, hidden)


def switch_model(catalog: ModelCatalog, model: str, case: ShownCase | None, image, age, sex, site, use_metadata,
                 lesion_stream, attention, previous=None, artefact="none", orientation=AS_IT_IS):
    """The model menu changed: clear the old model's results at once, load and describe the new model, then
    diagnose the shown case again with it (and remake its downloads).

    A generator, so the page never shows one model's scores, warnings or downloads under another's
    banner, not even while the new model loads; if loading or the new diagnosis fails, the results
    stay cleared and the error says why. Outputs: the banner, then :func:`diagnose`'s.
    """
    again = case is not None and image is not None
    note = (f"**Model changed to `{model}`:** the previous results were cleared"
            + ("; diagnosing the case again with this model…" if again else ". Press **Diagnose** to use it."))
    yield gr.skip(), *cleared_results(note)
    banner = describe_model(catalog, model)
    if not again:
        yield banner, *(gr.skip(),) * len(cleared_results(""))
        return
    shown = diagnose(catalog, image, age, sex, site, model, use_metadata, lesion_stream, attention, previous, artefact,
                     orientation)
    yield banner, *shown
    yield gr.skip(), *(gr.skip(),) * (len(shown) - 3), *make_report(shown[9])


@user_errors
def make_report(case: ShownCase | None):
    """The case sheet (PNG, PDF) and the JSON result as three downloads."""
    if case is None:
        raise ValueError("No case yet: diagnose an image first.")
    REPORTS.mkdir(parents=True, exist_ok=True)
    report.tidy(REPORTS)
    paths = report.write_case_report(case.image, case.diagnosis, REPORTS / uuid.uuid4().hex, case.name, case.followup,
                                     case.followup_problem)
    return tuple(gr.DownloadButton(value=str(paths[key]), visible=True) for key in ("png", "pdf", "json"))


def example_gallery() -> list[tuple[str, str]]:
    """(file, caption) of every real example: ISIC id, diagnosis and licence."""
    return [(e.path, e.caption) for e in real_examples()]


def pick_example(catalog: ModelCatalog, model: str | None, event: gr.SelectData):
    """Fill the inputs from the picked real example and show its diagnosis and licence.

    Real images are not what the teaching model is for: if it is chosen, go back to the app's default.
    """
    example = real_examples()[event.index]
    back = model == DEMO_MODEL and catalog.default != DEMO_MODEL
    return example.path, age_box(example.age), example.sex, example.site, example.truth(), catalog.default if back else gr.skip()


def phantom_gallery() -> list[tuple[str, str]]:
    """(file, caption) of every example phantom, made on first use."""
    return [(e.path, e.caption) for e in phantom_examples()]


def age_box(age: float | None) -> str:
    """An example's age as the age box shows it: blank when unknown, never 0."""
    return "" if age is None else f"{age:g}"


def pick_phantom(catalog: ModelCatalog, event: gr.SelectData):
    """Fill the inputs from the picked phantom, show its ground truth, and choose the teaching model
    (the one that learned from phantoms) when the app offers it."""
    example = phantom_examples()[event.index]
    model = DEMO_MODEL if DEMO_MODEL in catalog.names else gr.skip()
    return example.path, age_box(example.age), example.sex, example.site, example.truth(), model


@user_errors
def describe_model(catalog: ModelCatalog, model: str) -> str:
    """The banner for the chosen model (loading it on first use)."""
    return catalog.describe(model)


def forget_truth() -> str:
    """A new upload is not an example: drop the shown ground truth."""
    return ""
