"""``python -m train real`` end to end on a few of the real PH2 images: folds, recipes, the card of the result."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dermfuse import DermFuse, create_model
from experiments.real import RealConfig, run_real, sensitivity_at_specificity

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def few_real_images(real_images, tmp_path_factory):
    """12 nevi and 8 melanomas of ``../shared/data/real``, linked (not copied) into a folder of the same layout."""
    root = tmp_path_factory.mktemp("real")
    labels = pd.read_csv(real_images / "labels.csv")
    chosen = pd.concat([labels[labels["label"] == "nv"].head(12), labels[labels["label"] == "mel"].head(8)])
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for image in chosen["image"]:
        (root / "images" / f"{image}.jpg").symlink_to(real_images / "images" / f"{image}.jpg")
        (root / "masks" / f"{image}_segmentation.png").symlink_to(real_images / "masks" / f"{image}_segmentation.png")
    chosen.to_csv(root / "labels.csv", index=False)
    return root


@pytest.fixture(scope="module")
def result(few_real_images, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    base = work / "base"
    model = create_model("tiny", segmentation_size=[64, 64], image_size=[64, 64])
    model.update_config(name="base", dataset="phantom (synthetic, untrained stand-in)")
    model.save_pretrained(base)
    config = RealConfig(data=str(few_real_images), base=str(base), out=str(work / "out"), work=str(work / "runs"), folds=2,
                        joint_phantoms=8, segmenter_epochs=1, classifier_epochs=1, batch_size=4, ood_negatives=4,
                        workers=0)  # fmt: skip
    return run_real(config), work / "runs"


def test_cross_validation_scores_every_image_once_per_recipe(result):
    out, runs = result
    masks = pd.read_csv(runs / "segmentation_cv.csv")
    assert masks.groupby("recipe")["image_id"].nunique().to_dict() == {"phantom-only": 20, "finetune": 20, "joint": 20}
    assert masks["dice"].between(0, 1).all()
    oof = pd.read_csv(runs / "classification_cv.csv")
    assert len(oof) == 20 and oof["image_id"].is_unique and set(oof["fold"]) == {0, 1}
    cv = json.loads((runs / "cv.json").read_text())
    assert cv["segmenter_recipe"] in ("finetune", "joint") and 0 <= cv["classification"]["auc"] <= 1
    assert 0 <= cv["ood"]["real_flagged"] <= 1 and cv["classification"]["melanomas"] == 8
    assert (runs / "real_cases.png").is_file()  # best and worst out-of-fold masks


def test_the_final_model_is_two_class_calibrated_on_out_of_fold_logits_and_says_what_it_is(result):
    out, runs = result
    cv = json.loads((runs / "cv.json").read_text())
    model = DermFuse.from_pretrained(str(out))
    assert list(model.classes) == ["mel", "nv"] and model.dataset.startswith("PH2: 20 real dermoscopy images")
    assert model.temperature == pytest.approx(cv["classification"]["temperature_all_folds"])
    card = (out / "README.md").read_text()
    assert "Cross-validated on real images" in card and "PH² – A dermoscopic image database" in card
    assert "Not a medical device" in card and "Research use only" in card
    assert "fitted on the 20 cross-validated out-of-fold predictions" in card
    assert f"{cv['classification']['auc']:.4f}" in card and "Trained on synthetic phantom images" not in card


def test_sensitivity_at_specificity():
    labels = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    score = [0.1, 0.2, 0.3, 0.4, 0.9, 0.35, 0.6, 0.7, 0.8, 0.95]
    sensitivity, threshold = sensitivity_at_specificity(labels, score, 0.8)  # 0.6 lets one negative (0.9) pass
    assert sensitivity == pytest.approx(0.8) and threshold == pytest.approx(0.6)
