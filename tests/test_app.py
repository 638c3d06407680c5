"""The Gradio app in-process: the page's wiring, the callbacks, the words, the case sheet, the examples.

The model is the demo checkpoint when it exists (or ``$DERMFUSE_MODEL``), else a tiny untrained
stand-in; the real server is exercised in ``test_app_server.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from dermfuse import vocab
from dermfuse.data.phantom import generate_phantom
from dermfuse.pipeline import DermFusePipeline
from dermfuse.sources import DEFAULT_MODEL, DEMO_MODEL, MODEL_ENV
from dermfuse.ui import LAUNCH_OPTIONS, ModelCatalog, ModelSourceError, callbacks, examples, report, views
from dermfuse.ui.layout import PIPELINE_CONCURRENCY
from app_harness import APP, app_model
from conftest import colour_bars_in


@pytest.fixture(scope="module")
def model_source(tmp_path_factory):
    return app_model(tmp_path_factory.mktemp("standin"))


@pytest.fixture(scope="module")
def app(model_source):
    """``app.py`` imported as a module (as Spaces and the tests do): the model is loaded at import."""
    previous = os.environ.get(MODEL_ENV)
    os.environ[MODEL_ENV] = model_source
    try:
        spec = importlib.util.spec_from_file_location("dermfuse_app", APP)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            os.environ.pop(MODEL_ENV)
        else:
            os.environ[MODEL_ENV] = previous
    return module


@pytest.fixture(scope="module")
def catalog(app):
    return app_catalog(app)


def app_catalog(app) -> ModelCatalog:
    """The catalog the imported app was built with (bound into its callbacks)."""
    fn = next(f for f in app.demo.fns.values() if f.api_name == "predict").fn
    return fn.args[0]


@pytest.fixture(scope="module")
def example_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    return examples._load_or_make(folder)


def test_importing_the_app_loads_the_model_once_and_does_not_launch(app, model_source):
    assert isinstance(app.demo, gr.Blocks)
    assert not app.demo.is_running  # launch() sits behind the main guard
    catalog = app_catalog(app)
    assert Path(catalog.sources[catalog.default]).resolve() == Path(model_source).resolve()
    assert list(catalog._pipelines) == [catalog.default]


def test_every_event_has_an_api_name_and_predict_is_api_only(app):
    names = [fn.api_name for fn in app.demo.fns.values()]
    assert all(names) and len(set(names)) == len(names)
    assert {"predict", "diagnose", "report", "examples", "pick_example", "phantoms", "pick_phantom",
            "describe_model"} <= set(names)
    predict = next(fn for fn in app.demo.fns.values() if fn.api_name == "predict")
    assert not predict.targets  # no button: the API's own endpoint
    assert predict.concurrency_limit == PIPELINE_CONCURRENCY


def test_every_api_input_and_output_has_a_meaningful_name(app):
    endpoints = app.demo.get_api_info()["named_endpoints"]
    assert {"/predict", "/diagnose", "/describe_model"} <= set(endpoints)
    names = {f"{endpoint} {part}": item["label"] for endpoint, info in endpoints.items()
             for part in ("parameters", "returns") for item in info[part]}
    unnamed = {where: name for where, name in names.items() if re.fullmatch(r"(value|parameter|param)_\d+", name)}
    assert not unnamed, f"components without a label (name them with label=...): {unnamed}"
    assert endpoints["/describe_model"]["returns"][0]["label"] == "Model in use"


def test_launch_settings_suit_a_small_public_server(app):
    assert app.demo._queue.default_concurrency_limit == PIPELINE_CONCURRENCY
    assert app.demo._queue.max_size is not None
    assert LAUNCH_OPTIONS["max_file_size"] and LAUNCH_OPTIONS["show_error"] is False
    assert "share" not in LAUNCH_OPTIONS and app.parse_args([]).share is False
    assert app.parse_args(["--model", "x/y", "--port", "7000"]).model == "x/y"


def test_predict_callback_equals_the_pipeline(catalog, model_source, example_files):
    pipeline = DermFusePipeline.from_pretrained(model_source)
    for example in example_files[::5]:
        result = callbacks.predict(catalog, example.path, example.age, example.sex, example.site)
        direct = pipeline(example.path, example.age, example.sex, example.site, explain=False)
        np.testing.assert_allclose(result["probabilities"], direct.probabilities, atol=1e-6)
        assert result["labels"]["mel"] == {"name": "Melanoma", "malignant": True}
        json.dumps(result)  # plain JSON


@pytest.mark.parametrize("inputs, message", [
    ((None, 50, "male", "back"), "No image"),
    (("{empty}", 50, "male", "back"), "empty (0 bytes)"),
    (("{text}", 50, "male", "back"), "not an image file"),
    (("{good}", -5, "male", "back"), "age -5 is impossible"),
    (("{good}", 300, "male", "back"), "age 300 is impossible"),
    (("{good}", 50, "male", "the moon"), "unknown lesion site 'the moon'"),
    (("{good}", 50, "robot", "back"), "unknown sex 'robot'"),
])
def test_bad_input_is_a_clear_gradio_error(catalog, tmp_path, example_files, inputs, message):
    files = {"{empty}": tmp_path / "empty.jpg", "{text}": tmp_path / "notes.txt", "{good}": example_files[0].path}
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a picture")
    image = str(files.get(inputs[0], inputs[0])) if inputs[0] else None
    with pytest.raises(gr.Error) as caught:
        callbacks.predict(catalog, image, *inputs[1:])
    assert message in caught.value.message and str(tmp_path) not in caught.value.message
    assert ".." not in caught.value.message.replace("...", "")  # one full stop (an ellipsis is fine)


def test_an_upload_is_named_by_the_users_file_name(catalog, tmp_path):
    stored = tmp_path / "0a1b2c" / "upload.jpg"
    stored.parent.mkdir()
    stored.write_bytes(b"")
    with pytest.raises(gr.Error) as caught:
        callbacks.predict(catalog, {"path": str(stored), "orig_name": "my lesion.jpg"})
    assert caught.value.message.startswith("'my lesion.jpg' is empty (0 bytes)")


def test_the_json_result_names_the_uploaded_file_as_the_case_sheet_does(catalog, example_files, tmp_path):
    upload = {"path": example_files[0].path, "orig_name": "my lesion.png"}
    assert callbacks.predict(catalog, upload)["image_id"] == "my lesion"
    outputs = callbacks.diagnose(catalog, upload, None, "unknown", "unknown", None, True, True, False)
    assert outputs[7]["image_id"] == "my lesion" and outputs[9].name == "my lesion.png"
    paths = report.write_case_report(outputs[9].image, outputs[9].diagnosis, tmp_path, outputs[9].name)
    assert json.loads(paths["json"].read_text())["image_id"] == "my lesion"


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (40, 90, 200)])
def test_a_single_colour_image_is_not_assessable_and_shows_no_diagnosis(catalog, tmp_path, colour):
    path = tmp_path / "flat.png"
    Image.new("RGB", (200, 150), colour).save(path)
    outputs = callbacks.diagnose(catalog, str(path), "", "unknown", "unknown", None, True, True, False)
    scores, warnings, reading, result = outputs[4], outputs[5], outputs[6], outputs[7]
    assert scores.value == {} and "not assessable" in scores.label  # no bar chart, no top class: the title says why
    assert "Not assessable: no diagnosis is shown" in warnings and "blank" in warnings
    assert "Withheld" in reading and "%" not in reading.split("### Scores")[1]
    assert reading.startswith("*The image is not assessable: what follows shows what the segmenter")
    assert result["assessable"] is False and result["scores_withheld"] and result["top_class"] is None
    sheet = report.sheet_text(outputs[9].diagnosis)
    assert "Not assessable" in sheet and "Highest score" not in sheet
    assert callbacks.predict(catalog, str(path))["probabilities"] is None


def test_diagnose_fills_every_output_and_the_teaching_switches_act(catalog, example_files):
    example = next(e for e in example_files if e.label == "mel")
    outputs = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, True, True, True)
    outline, lesion, heat_image, heat_lesion, scores, warnings, reading, result, gates, case = outputs[:10]
    for picture in (outline, heat_image, heat_lesion):
        assert picture.shape[2] == 3 and max(picture.shape[:2]) <= views.DISPLAY_SIDE
    assert colour_bars_in(heat_image) == colour_bars_in(heat_lesion) == 1 and colour_bars_in(outline) == 0
    assert lesion.ndim == 3
    shown = {row["label"]: row["confidence"] for row in scores.value["confidences"]}
    assert len(shown) == len(result["classes"]) and abs(sum(shown.values()) - 1) < 1e-5
    assert "Demo model trained on synthetic phantom images" in warnings
    count = warnings.count("- ⚠️ ")
    assert scores.label.startswith(f"Calibrated scores · ⚠️ {count} warning")  # read where the scores are
    assert "What the metadata changed" in reading and "Melanoma (`mel`) | **malignant**" in reading
    assert reading.startswith("### Where the model looked")  # no caution over an assessable image's findings
    assert gates.visible and len(gates.value) == 4
    assert isinstance(case, callbacks.ShownCase)

    blind = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, False, False, False)
    assert blind[3] is None  # no lesion-stream heatmap when the stream is blinded
    assert blind[7]["metadata"] == result["metadata"] and blind[7]["metadata_used"] == []  # kept, but not given
    np.testing.assert_allclose(blind[7]["probabilities"], blind[7]["probabilities_without_metadata"], atol=1e-6)
    assert blind[7]["probabilities"] != result["probabilities"]
    assert "lesion stream was shown a blank image" in blind[5]
    assert not blind[8].visible


def test_an_untouched_age_box_is_unknown_never_zero(app, catalog, example_files):
    boxes = {block.elem_id: block for block in app.demo.blocks.values() if getattr(block, "elem_id", None)}
    # Gradio 6's number box shows and sends 0 when left empty; the age box must send blank.
    assert not isinstance(boxes["age"], gr.Number) and boxes["age"].value in ("", None)
    assert boxes["sex"].value == boxes["site"].value == vocab.UNKNOWN
    path = example_files[0].path
    untouched = callbacks.predict(catalog, path, boxes["age"].value, boxes["sex"].value, boxes["site"].value)
    assert untouched["metadata"] == {"age": None, "sex": "unknown", "site": "unknown"}
    assert untouched["metadata_used"] == []
    np.testing.assert_allclose(untouched["probabilities"], untouched["probabilities_without_metadata"], atol=1e-6)
    assert callbacks.predict(catalog, path, "0")["metadata"]["age"] == 0  # a typed 0 is a (newborn's) age
    typed = callbacks.predict(catalog, path, " 63 ", "female", "back")
    assert typed["metadata"]["age"] == 63 and typed["metadata_used"] == ["age", "sex", "site"]
    with pytest.raises(gr.Error, match="age 'sixty' is not a number"):
        callbacks.predict(catalog, path, "sixty")


def test_the_reading_says_which_patient_data_the_result_used(catalog, example_files):
    path = example_files[0].path
    reading = callbacks.diagnose(catalog, path, "", "female", "unknown", None, True, True, False)[6]
    assert "**Patient data used for this result:** female. Unknown: age, site." in reading
    reading = callbacks.diagnose(catalog, path, "", "unknown", "unknown", None, True, True, False)[6]
    assert "none: age, sex and site unknown (the image alone)" in reading
    reading = callbacks.diagnose(catalog, path, "50", "female", "face", None, False, True, False)[6]
    assert "none: the teaching view's metadata switch is off" in reading


def test_a_model_trained_without_metadata_shows_no_metadata_effects(catalog, example_files):
    real = "dermfuse-tiny-ph2-melanoma"  # PH2 has no patient metadata: its config records trained_metadata []
    outputs = callbacks.diagnose(catalog, example_files[0].path, "60", "male", "back", real, True, True, False)
    reading, result, case = outputs[6], outputs[7], outputs[9]
    assert result["metadata"] == {"age": 60.0, "sex": "male", "site": "posterior torso"}
    assert result["metadata_used"] == [] and result["model"]["metadata_fields"] == []
    np.testing.assert_allclose(result["probabilities"], result["probabilities_without_metadata"], atol=1e-6)
    assert "trained without patient metadata" in reading
    assert "What the metadata changed" not in reading and "| without |" not in reading and "pts" not in reading
    sheet = "\n".join(text.get_text() for text in report.case_sheet(case.image, case.diagnosis).texts)
    assert "trained without patient metadata" in sheet and "percentage points" not in sheet


def test_switching_the_model_clears_the_old_results_then_diagnoses_the_case_again(catalog, example_files):
    real, path = "dermfuse-tiny-ph2-melanoma", example_files[0].path
    case = callbacks.diagnose(catalog, path, "", "unknown", "unknown", None, True, True, False)[9]
    steps = list(callbacks.switch_model(catalog, real, case, path, "", "unknown", "unknown", True, True, False))
    assert len(steps) == 3
    cleared = steps[0]  # at once, before the new model loads: nothing of the old result is left
    assert cleared[0] == gr.skip() and cleared[1:5] == (None,) * 4 and cleared[7:9] == ("", None)
    assert cleared[5].value == {} and cleared[5].label == views.SCORES_TITLE  # no chart, and no old warning count
    assert f"Model changed to `{real}`" in cleared[6] and "diagnosing the case again" in cleared[6]
    assert cleared[10] is None and not cleared[9].visible and not any(button.visible for button in cleared[-3:])
    assert cleared[11:13] == ("", "") and not cleared[13].visible  # the ABCD panel, the follow-up and its picture
    banner, *again = steps[1]
    assert "trained on real dermoscopy images (PH2)" in banner
    assert again[7]["model"]["name"] == real and again[7]["classes"] == ["mel", "nv"]
    assert again[9].diagnosis.model["name"] == real and "synthetic phantom" not in again[5]
    assert all(button.visible and Path(button.value["path"]).is_file() for button in steps[2][-3:])  # its new report
    assert all(output == gr.skip() for output in steps[2][:-3])


def test_switching_the_model_with_no_case_shown_clears_and_waits_for_diagnose(catalog, example_files):
    steps = list(callbacks.switch_model(catalog, catalog.default, None, example_files[0].path, "", "unknown",
                                        "unknown", True, True, False))  # fmt: skip
    assert len(steps) == 2 and "Press **Diagnose** to use it" in steps[0][6] and steps[0][10] is None
    assert "Model:" in steps[1][0] and all(output == gr.skip() for output in steps[1][1:])


def test_a_model_that_fails_to_load_leaves_the_results_cleared(catalog, example_files):
    switch = callbacks.switch_model(catalog, "nope", None, example_files[0].path, "", "unknown", "unknown", True,
                                    True, False)  # fmt: skip
    assert "Model changed to `nope`" in next(switch)[6]
    with pytest.raises(gr.Error, match="unknown model 'nope'"):
        next(switch)


def test_one_diagnosis_decodes_the_upload_once_and_checks_each_field_once(catalog, example_files, monkeypatch):
    from dermfuse.data import io, metadata

    example = next(e for e in example_files if e.site not in (None, "", "unknown"))
    shown = {"age": vocab.normalize_age(example.age), "sex": vocab.normalize_sex(example.sex),
             "site": vocab.normalize_site(example.site)}  # fmt: skip
    calls = dict.fromkeys(("decode", "age", "sex", "site"), 0)

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(io, "_open", counted("decode", io._open))  # every image load starts here
    for field in ("age", "sex", "site"):
        check = counted(field, getattr(vocab, f"normalize_{field}"))
        monkeypatch.setattr(vocab, f"normalize_{field}", check)
        monkeypatch.setattr(metadata, f"normalize_{field}", check)
    outputs = callbacks.diagnose(catalog, example.path, example.age, example.sex, example.site, None, True, True, False)
    assert calls == {"decode": 1, "age": 1, "sex": 1, "site": 1}
    assert outputs[7]["metadata"] == shown and outputs[9].diagnosis.metadata == shown

    calls.update(dict.fromkeys(calls, 0))
    callbacks.predict(catalog, example.path, example.age, example.sex, example.site)
    assert calls == {"decode": 1, "age": 1, "sex": 1, "site": 1}


def test_words_for_a_known_lesion(catalog):
    phantom = generate_phantom("mel", seed=3, size=256)
    diagnosis = catalog.pipeline(catalog.default)(phantom.image, 60, "male", "back", mask=phantom.mask)
    focus = views.focus_lines(diagnosis)
    expected = [f"{100 * diagnosis.lesion_focus[s]:.0f} %" for s in ("image", "lesion")]
    assert all("of the heat lies on the lesion" in line for line in focus)
    assert [e in line for e, line in zip(expected, focus)] == [True, True]
    rows = dict(views.measurement_rows(diagnosis))
    assert rows["area"] == f"{100 * phantom.mask.mean():.1f} % of the image"
    assert "age 60, male, posterior torso" in views.metadata_effect(diagnosis)
    labels = views.score_label(diagnosis)
    assert "Melanoma (mel) · malignant" in labels and "Melanocytic nevus (nv) · benign" in labels


@pytest.mark.parametrize("warnings, assessable, title", [
    ([], True, "Calibrated scores"),
    (["a"], True, "Calibrated scores · ⚠️ 1 warning below the pictures: read it first"),
    (["a", "b"], True, "Calibrated scores · ⚠️ 2 warnings below the pictures: read them first"),
    (["a"], False, "Calibrated scores: none, the image is not assessable (why: below the pictures)"),
])
def test_the_score_chart_title_points_to_the_warnings(warnings, assessable, title):
    diagnosis = SimpleNamespace(warnings=warnings, assessable=assessable)
    assert views.scores_title(diagnosis) == title


def test_case_sheet_png_pdf_json(catalog, tmp_path):
    phantom = generate_phantom("bcc", seed=1, size=256)
    diagnosis = catalog.pipeline(catalog.default)(phantom.image, None, "female", None, mask=phantom.mask)
    paths = report.write_case_report(phantom.image, diagnosis, tmp_path, "bcc.png")
    with Image.open(paths["png"]) as sheet:
        assert sheet.size == (int(8.27 * report.PNG_DPI), int(11.69 * report.PNG_DPI))
        pixels = np.asarray(sheet.convert("RGB"))
    assert (pixels < 250).mean() > 0.05  # pictures and text, not an empty page
    assert colour_bars_in(pixels) == 2  # one under each heatmap
    assert paths["pdf"].read_bytes()[:5] == b"%PDF-" and paths["pdf"].stat().st_size > 20_000
    assert json.loads(paths["json"].read_text())["probabilities"] == diagnosis.probabilities


def test_examples_cover_every_class_and_are_cached(tmp_path):
    first = examples._load_or_make(tmp_path)
    assert [e.label for e in first] == [c for c in vocab.HAM10000_CLASSES for _ in range(examples.PER_CLASS)]
    mtimes = [os.path.getmtime(e.path) for e in first]
    assert examples._load_or_make(tmp_path) == first
    assert [os.path.getmtime(e.path) for e in first] == mtimes  # read back, not redrawn
    with Image.open(first[0].path) as image:
        assert image.size == (examples.SIZE, examples.SIZE)
    assert first[0].caption == "akiec" and vocab.DIAGNOSIS_NAMES["akiec"] in first[0].truth()


def picked(index: int) -> gr.SelectData:
    """The event a click on gallery item ``index`` sends."""
    return gr.SelectData(None, {"index": index, "value": None})


def descendants(block) -> list:
    """Every block inside ``block`` (a layout such as an accordion), at any depth."""
    children = getattr(block, "children", [])
    return children + [d for child in children for d in descendants(child)]


def test_the_gallery_shows_the_real_examples_with_id_diagnosis_and_licence(app, catalog):
    real = examples.real_examples()
    shown = callbacks.example_gallery()
    assert len(shown) == len(real) >= 4 and [path for path, _ in shown] == [e.path for e in real]
    assert all(Path(path).parent == examples.EXAMPLES for path, _ in shown)  # the repository's files, not phantoms
    for (_, caption), example in zip(shown, real):
        assert caption == f"{example.isic_id} · {example.label} · CC0"
    assert "ISIC_0000049 · mel · CC0" in [caption for _, caption in shown]

    path, age, sex, site, truth, model = callbacks.pick_example(catalog, catalog.default, picked(0))
    assert (path, age, sex, site) == (real[0].path, callbacks.age_box(real[0].age), real[0].sex, real[0].site)
    assert f"**{real[0].isic_id}**" in truth and "licence CC0" in truth
    assert vocab.DIAGNOSIS_NAMES[real[0].label] in truth
    assert model == gr.skip()  # the chosen model stays
    # Picked while the teaching model is chosen, a real example goes back to the app's default model.
    real_default = ModelCatalog({DEFAULT_MODEL: "a", DEMO_MODEL: "b"}, DEFAULT_MODEL)
    assert callbacks.pick_example(real_default, DEMO_MODEL, picked(0))[-1] == DEFAULT_MODEL
    assert callbacks.pick_example(real_default, "dermfuse-tiny-ph2-melanoma", picked(0))[-1] == gr.skip()


def test_phantoms_sit_in_the_teaching_view_and_choose_the_teaching_model(app, catalog, example_files, monkeypatch):
    teaching = next(b for b in app.demo.blocks.values()
                    if isinstance(b, gr.Accordion) and b.label.startswith("Teaching view"))
    assert "phantoms" in [getattr(b, "elem_id", None) for b in descendants(teaching)]
    main = next(b for b in app.demo.blocks.values() if getattr(b, "elem_id", None) == "examples")
    assert main not in descendants(teaching)

    monkeypatch.setattr(callbacks, "phantom_examples", lambda: example_files)
    assert callbacks.phantom_gallery() == [(e.path, e.label) for e in example_files]
    phantom = example_files[3]
    path, age, sex, site, truth, model = callbacks.pick_phantom(catalog, picked(3))
    assert (path, age, sex, site) == (phantom.path, callbacks.age_box(phantom.age), phantom.sex, phantom.site)
    assert "Ground truth of this phantom" in truth and model == DEMO_MODEL
    without_teaching = ModelCatalog({DEFAULT_MODEL: "a"}, DEFAULT_MODEL)
    assert callbacks.pick_phantom(without_teaching, picked(3))[-1] == gr.skip()


def test_the_app_answers_for_a_real_example(catalog):
    if DEFAULT_MODEL not in catalog.names:
        pytest.skip(f"the real-data model {DEFAULT_MODEL} is not in checkpoints/ (python -m train ham10000)")
    example = next(e for e in examples.real_examples() if e.age is not None)
    answer = callbacks.predict(catalog, example.path, example.age, example.sex, example.site, DEFAULT_MODEL)
    assert answer["model"]["name"] == DEFAULT_MODEL
    assert answer["classes"] == list(vocab.HAM10000_CLASSES) and answer["lesion_found"]
    assert sum(answer["probabilities"]) == pytest.approx(1.0)
    assert answer["metadata"]["age"] == example.age and answer["metadata"]["sex"] == example.sex


def test_catalog_offers_every_shipped_model_and_loads_them_lazily(monkeypatch, model_source, tmp_path):
    second = shutil.copytree(model_source, tmp_path / "dermfuse-tiny-ph2")
    shipped = {"dermfuse-tiny-ph2": str(second), "dermfuse-tiny-phantom": str(Path(model_source).resolve())}
    monkeypatch.setattr("dermfuse.ui.catalog.shipped_models", lambda: shipped)
    catalog = ModelCatalog.open(model_source)
    assert catalog.names == ["dermfuse-tiny-phantom", "dermfuse-tiny-ph2"]  # the chosen one first, no duplicate
    assert list(catalog._pipelines) == ["dermfuse-tiny-phantom"]  # the other waits until it is picked
    assert "synthetic phantom" in catalog.describe("dermfuse-tiny-ph2")
    assert list(catalog._pipelines) == ["dermfuse-tiny-phantom", "dermfuse-tiny-ph2"]
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        catalog.pipeline("nope")


def test_the_shipped_real_model_is_offered_described_and_answers_with_its_two_classes(catalog, example_files):
    real = "dermfuse-tiny-ph2-melanoma"
    assert real in catalog.names and catalog.default == "dermfuse-tiny-phantom"
    banner = catalog.describe(real)
    assert "trained on real dermoscopy images (PH2)" in banner and "melanoma vs. nevus only" in banner
    assert "PH2: 140 real dermoscopy images" in banner
    assert "synthetic phantom" not in banner
    answer = callbacks.predict(catalog, str(example_files[0].path), 60, "female", "back", real)
    assert answer["classes"] == ["mel", "nv"] and answer["model"]["name"] == real
    assert sum(answer["probabilities"]) == pytest.approx(1.0)


@pytest.mark.parametrize("source, message", [
    ("/no/such/folder", "model folder /no/such/folder does not exist"),
    ("{file}", "cannot load model"),
    ("{pickle}", "would need unpickling (arbitrary code) and is refused"),
])
def test_bad_model_source_is_refused_with_a_clear_message(tmp_path, source, message):
    if source == "{file}":
        (tmp_path / "config.json").write_text("{}")
        source = str(tmp_path)
    if source == "{pickle}":
        (tmp_path / "config.json").write_text("{}")
        (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
        source = str(tmp_path)
    with pytest.raises(ModelSourceError, match=re.escape(message)) as caught:
        ModelCatalog.open(source)
    assert ".." not in str(caught.value)  # a reason that is a whole sentence gets one full stop, not two


@pytest.mark.slow
def test_app_with_a_bad_model_stops_at_start_up(tmp_path):
    done = subprocess.run([sys.executable, str(APP), "--model", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"dermfuse app: model folder {tmp_path / 'missing'} does not exist" in done.stderr
    assert "Traceback" not in done.stderr
