"""Both stages end to end on phantoms, their artefacts, the model card, and publishing with a fake Hub client."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from train_support import classifier_args, make_phantoms, segmenter_args

from dermfuse import DermFuse
from dermfuse.data import read_manifest
from dermfuse.data.colour_constancy import mean_light
from train.__main__ import main as train_cli
from train.classifier import run_classifier
from train.config import ClassifierConfig, SegmenterConfig, parse_config
from publish.card import model_card
from publish.push import export, push
from train.segmenter import run_segmenter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Stage 1 (2 epochs) then stage 2 (2 epochs, jittered masks, prior-shift calibration, white balance) on 28 phantoms
    at 64 px."""
    root = tmp_path_factory.mktemp("pipeline")
    data = make_phantoms(root / "phantoms")
    segmenter = run_segmenter(parse_config(SegmenterConfig, segmenter_args(root / "seg", data, "--epochs=2")))
    classifier = run_classifier(parse_config(ClassifierConfig, classifier_args(root / "cls", segmenter, "--epochs=2", "--mask_jitter=0.1",
                                                                     "--calibration=prior", "--white_balance=true")))
    return segmenter, classifier


def test_stage1_writes_config_manifest_metrics_curves_and_model(runs):
    seg, _ = runs
    config = json.loads((seg / "train_config.json").read_text())
    assert config["stage"] == "segmenter" and config["segmentation_size"] == 64
    manifest = read_manifest(seg / "splits.csv")
    assert manifest["split"].value_counts().to_dict() == {"train": 14, "val": 7, "test": 7}
    metrics = json.loads((seg / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert metrics["steps"] == 6 and metrics["stopped"] == "epochs"  # 14 train images, batches of 4: 3 steps/epoch
    for key in ("dice", "iou", "thresholded_jaccard", "sensitivity", "specificity"):
        assert key in metrics["epochs"][-1]["val"] and key in metrics["test"]
    assert metrics["test"]["images"] == 7
    assert Image.open(seg / "learning_curves.png").size[0] > 500
    model = DermFuse.from_pretrained(str(seg / "model"))
    assert model.segmentation_size == (64, 64)


def test_stage2_calibrates_stores_temperature_and_writes_figures(runs):
    seg, cls = runs
    metrics = json.loads((cls / "metrics.json").read_text())
    calibration = metrics["calibration"]
    model = DermFuse.from_pretrained(str(cls / "model"))
    assert model.temperature == pytest.approx(calibration["temperature"]) and model.temperature != 1.0
    shift = calibration["prior_shift"]
    assert 0 <= shift["alpha"] <= 1 and len(shift["log_prior"]) == len(model.classes)
    if shift["alpha"]:
        assert model.prior_shift == pytest.approx([shift["alpha"] * v for v in shift["log_prior"]])
    else:
        assert model.prior_shift is None
    assert model.name == "dermfuse-tiny-phantom" and model.dataset.startswith("phantom (synthetic)")
    assert model.trained_metadata == ["age", "sex", "site"]  # phantoms carry all three: the app may use them
    train_ages = read_manifest(cls / "splits.csv").query("split == 'train'")["age"].dropna()
    assert model.age_range == [train_ages.min(), train_ages.max()]  # older or younger ones are given as these
    # --white_balance: every image is balanced to the training split's mean light, which the model keeps.
    train_paths = read_manifest(cls / "splits.csv").query("split == 'train'")["image_path"]
    assert model.white_balance == pytest.approx(mean_light(Image.open(path).convert("RGB") for path in train_paths))
    assert calibration["val_ece_after"] <= calibration["val_ece_before"] + 1e-9  # fitted on val: never worse there
    # The OOD gate was fitted on the 14 training images and stored in the model's config.
    assert calibration["ood"]["fitted_on"] == "train" and calibration["ood"]["images"] == 14
    assert model.ood is not None and model.ood["threshold"] == pytest.approx(calibration["ood"]["threshold"])
    assert len(model.ood["deep_mean"]) == len(model.ood["deep_var"]) > 0 and 0 <= calibration["ood"]["test_flagged"] <= 1
    test = metrics["test"]
    assert test["cases"] == 7 and sum(map(sum, test["confusion_matrix"])) == 7
    assert set(test["per_class"]) == set(model.classes) and 0 <= test["balanced_accuracy"] <= 1
    assert metrics["segmenter"]["test"]["dice"] == json.loads((seg / "metrics.json").read_text())["test"]["dice"]
    for figure in ("learning_curves.png", "confusion_matrix.png", "roc_curves.png", "reliability.png"):
        assert Image.open(cls / figure).size[0] > 300, figure
    # Masks were predicted once for every labelled image, at each image's own size.
    masks = sorted((cls / "masks").glob("*.png"))
    assert len(masks) == 28 and Image.open(masks[0]).size == (64, 64)
    # Stage 2 reused stage 1's split.
    assert (read_manifest(cls / "splits.csv")["split"] == read_manifest(seg / "splits.csv")["split"]).all()


def test_export_writes_a_loadable_model_with_a_real_card(runs, tmp_path):
    _, cls = runs
    folder = export(cls, tmp_path / "export", reproduce={"command": "python -m train demo", "wall_time": "1 minute"})
    assert {"config.json", "model.safetensors", "README.md", "metrics.json", "splits.csv", "train_config.json",
            "reliability.png", "segmenter_learning_curves.png"} <= {p.name for p in folder.iterdir()}  # fmt: skip
    card = (folder / "README.md").read_text()
    metrics = json.loads((cls / "metrics.json").read_text())
    assert card.startswith("---\nlibrary_name: dermfuse")
    assert "Not a medical device" in card and "Trained on synthetic phantom images" in card and "not for diagnosis" in card
    assert f"{metrics['test']['balanced_accuracy']:.4f}" in card and f"{metrics['calibration']['temperature']:.4f}" in card
    assert "test split" in card and "`mel` | Melanoma" in card and "python -m train demo" in card
    assert "Fitted on 14 training images" in card and f"{metrics['calibration']['ood']['threshold']:.3f}" in card
    assert "image_path" not in (folder / "splits.csv").read_text().splitlines()[0]  # no local paths published
    assert DermFuse.from_pretrained(str(folder)).temperature == pytest.approx(metrics["calibration"]["temperature"])


class RecordingHub:
    """A stand-in for ``huggingface_hub.HfApi`` that copies uploads into a local folder."""

    def __init__(self, root: Path, fail: bool = False):
        self.root, self.fail, self.calls = root, fail, []

    def create_repo(self, repo_id, **options):
        self.calls.append(("create_repo", repo_id, options))

    def upload_folder(self, repo_id, folder_path, **options):
        self.calls.append(("upload_folder", repo_id, options))
        if self.fail:
            raise ConnectionError("network is unreachable")
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)


@pytest.mark.parametrize("trained_metadata, summary", [
    (None, "plus a transformer over age, sex and site names it"),
    (["age", "site"], "plus a transformer over age and site names it"),
    ([], "fused by cross-attention names it"),  # PH2: no patient metadata, so the card claims none
])
def test_the_card_names_the_metadata_the_model_learned_from(runs, trained_metadata, summary):
    config = json.loads((runs[1] / "model" / "config.json").read_text())
    metrics = json.loads((runs[1] / "metrics.json").read_text())
    train_config = json.loads((runs[1] / "train_config.json").read_text())
    assert summary in model_card({**config, "trained_metadata": trained_metadata}, metrics, train_config)


def test_the_card_says_how_ages_outside_the_training_images_are_given(runs):
    config = json.loads((runs[1] / "model" / "config.json").read_text())
    metrics = json.loads((runs[1] / "metrics.json").read_text())
    train_config = json.loads((runs[1] / "train_config.json").read_text())
    card = model_card({**config, "age_range": [0.0, 85.0]}, metrics, train_config)
    assert "ages run from 0 to 85, and an age outside is given to it as the nearer of the two" in card
    assert "ages run from" not in model_card({**config, "age_range": None}, metrics, train_config)


def test_a_classifier_built_to_see_central_squares_keeps_that_in_its_config():
    from dermfuse import create_model
    from train.classifier import build_model

    source = create_model("tiny")
    model, _ = build_model(source, ["mel", "nv"], image_framing="central_square")
    assert model.image_framing == "central_square" and model.config["image_framing"] == "central_square"
    assert build_model(source, ["mel", "nv"])[0].image_framing == "whole"  # '' keeps the source's
    with pytest.raises(ValueError, match="unknown image_framing"):
        build_model(source, ["mel", "nv"], image_framing="letterbox")


@pytest.mark.parametrize("framing, words", [("whole", "Image stream: the whole frame"),
                                            ("central_square", "Image stream: the central square of the frame")])
def test_the_card_says_what_part_of_a_frame_the_image_stream_sees(runs, framing, words):
    config = json.loads((runs[1] / "model" / "config.json").read_text())
    metrics = json.loads((runs[1] / "metrics.json").read_text())
    train_config = json.loads((runs[1] / "train_config.json").read_text())
    assert words in model_card({**config, "image_framing": framing}, metrics, train_config)


def test_push_uploads_the_exported_folder(runs, tmp_path):
    _, cls = runs
    hub = RecordingHub(tmp_path / "hub")
    assert push(cls, "someone/dermfuse-test", api=hub, folder=tmp_path / "publish") == 0
    assert [call[0] for call in hub.calls] == ["create_repo", "upload_folder"]
    uploaded = tmp_path / "hub" / "someone" / "dermfuse-test"
    assert DermFuse.from_pretrained(str(uploaded)).classes == DermFuse.from_pretrained(str(cls / "model")).classes
    assert 'from_pretrained("someone/dermfuse-test")' in (uploaded / "README.md").read_text()


def test_a_failing_upload_reports_and_keeps_the_local_files(runs, tmp_path, capsys):
    _, cls = runs
    hub = RecordingHub(tmp_path / "hub", fail=True)
    assert push(cls, "someone/dermfuse-test", api=hub, folder=tmp_path / "publish") == 1
    assert "network is unreachable" in capsys.readouterr().err
    assert DermFuse.from_pretrained(str(tmp_path / "publish")).name == "dermfuse-tiny-phantom"
    assert (cls / "model" / "model.safetensors").is_file()


def test_push_refuses_a_stage1_run_and_a_bad_repo_id(runs, tmp_path):
    seg, cls = runs
    with pytest.raises(ValueError, match="not a finished stage-2 run"):
        push(seg, "someone/x", api=RecordingHub(tmp_path))
    with pytest.raises(ValueError, match="USER/NAME"):
        push(cls, "no-slash", api=RecordingHub(tmp_path))


def test_cli_without_data_explains_how_to_get_it(tmp_path, capsys):
    assert train_cli(["segmenter", f"--out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "HAM10000" in err and "ISIC 2018" in err and "--phantoms=N" in err
    assert not (tmp_path / "run").exists()  # nothing written before the data is known
    assert train_cli(["classifier", "--lrr=1"]) == 2 and "did you mean --lr" in capsys.readouterr().err
