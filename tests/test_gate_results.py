"""The assessability gate's study (``experiments/gate.py``): it counts every rule the pipeline applies, and the
committed ``docs/results/gate.json`` agrees with the focus and bare-skin studies and with the README."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import skimage.data

from dermfuse.assess import thumbnails
from dermfuse.sources import CHECKPOINTS
from experiments.gate import rules_of

ROOT = CHECKPOINTS.parent
RESULTS = ROOT / "docs" / "results"


def _part(image: np.ndarray) -> dict:
    mask = np.zeros(image.shape[:2], dtype=bool)
    mask[image.shape[0] // 4:image.shape[0] // 2, image.shape[1] // 4:image.shape[1] // 2] = True
    small, prob, lesion = thumbnails(image, mask.astype(np.float32), mask)
    return {"small": [small], "prob": [prob], "lesion": [lesion], "size": [(image.shape[1], image.shape[0])]}


def limits(side: int = 0, sharpness: float = 0.0, contrast: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(min_image_side=side, min_sharpness=sharpness, min_lesion_contrast=contrast)


def test_the_study_applies_the_models_least_side_sharpness_and_contrast_as_the_pipeline_does():
    photo = skimage.data.coffee()  # 600×400, sharp: no rule fires on it
    assert rules_of(_part(photo), limits()) == [[]]
    assert "too small to judge: 600×400 pixels" in rules_of(_part(photo), limits(side=401))[0][0]
    blurred = rules_of(_part(photo), limits(sharpness=20.0))[0]
    assert len(blurred) == 1 and blurred[0].startswith("The image is out of focus")
    faint = rules_of(_part(photo), limits(contrast=200.0))[0]  # no lesion stands out by ΔE*ab 200
    assert len(faint) == 1 and faint[0].startswith("No lesion stands out from the skin")


def test_the_committed_gate_study_counts_the_images_the_focus_and_bare_skin_studies_turn_away():
    gate = json.loads((RESULTS / "gate.json").read_text())["sources"]
    focus = json.loads((RESULTS / "focus.json").read_text())["other_sources"]
    bare = json.loads((RESULTS / "bare_skin.json").read_text())["images"]
    for gate_name, name in (("ham10000_test", "HAM10000 test"), ("isic2018_task1_test", "ISIC 2018 test"),
                            ("ph2", "PH2"), ("isic_cc0", "CC0 originals")):
        assert gate[gate_name]["images"] == focus[name]["images"] == bare[name]["images"]
        under = round(focus[name]["under_least_sharpness"] * focus[name]["images"])
        assert gate[gate_name]["rules"].get("The image is out of focus", 0) == under, gate_name
        under = round(bare[name]["under_least_contrast"] * bare[name]["images"])
        assert gate[gate_name]["rules"].get("No lesion stands out from the skin", 0) == under, gate_name
    validation = sum(round(bare[name]["under_least_contrast"] * bare[name]["images"])
                     for name in ("HAM10000 validation", "ISIC 2018 validation"))
    assert gate["val"]["rules"].get("No lesion stands out from the skin", 0) == validation
    assert gate["ham10000_test"]["rules"]["The image is out of focus"] == 7  # the focus study's 7 of 1,498


def test_the_readme_quotes_the_committed_rejection_rates():
    gate = json.loads((RESULTS / "gate.json").read_text())["sources"]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    others = [row["rejected"] for name, row in gate.items() if name.startswith("not_dermoscopy:")]
    said = (f"it turned away {100 * gate['ham10000_test']['rejected']:.1f} % of HAM10000's test split, "
            f"{100 * gate['isic2018_task1_test']['rejected']:.1f} % of ISIC 2018's, {100 * gate['ph2']['rejected']:.1f} % of "
            f"PH2, none of the CC0 originals and {100 * min(others):.1f}–{100 * max(others):.0f} % of each kind")
    assert gate["isic_cc0"]["rejected"] == 0 and said in readme


def test_the_cc0_originals_the_model_split_holds_are_counted_and_named():
    gate = json.loads((RESULTS / "gate.json").read_text())
    shared = gate["sources"]["isic_cc0"]["in_model_split"]
    assert shared == {"model_train": 27, "model_val": 8, "gate_score": 1, "gate_threshold": 8}
    assert "in_model_split" not in gate["sources"]["ph2"]  # PH2 is in no split of the model
    from experiments.report_sections import trust_section

    text = trust_section(gate, RESULTS / "gate.json", None, RESULTS / "lesion_focus.json")
    assert ("Of the 40 isic_cc0 images, 35 are also in the model's split (27 train, 8 val: ISIC 2018 Task 1 images, "
            "which the segmenter learned from or picked its epoch on); 1 was among the images the gate's score was "
            "fitted on and 8 among those its threshold was set on") in text
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "35 of the 40 are also ISIC 2018 Task 1 images of the model's split" in readme
