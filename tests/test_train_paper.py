"""The paper preset (2 × DenseNet201, EfficientNet-B3 Deep-UNet) trains: one optimisation step per stage at 224×224 on CPU."""

from __future__ import annotations

import math

import pytest
import torch
from train_support import classifier_args, make_phantoms, segmenter_args, weights

from dermfuse import create_model
from train.checkpoint import load_checkpoint
from train.classifier import run_classifier
from train.config import ClassifierConfig, SegmenterConfig, parse_config
from train.segmenter import run_segmenter

pytestmark = pytest.mark.slow


def changed(before: dict, after: dict, prefix: str) -> tuple[int, int]:
    """(tensors under ``prefix`` that changed, tensors under ``prefix``), floating-point ones only."""
    names = [n for n in before if n.startswith(prefix) and before[n].is_floating_point()]
    return sum(not torch.equal(before[n], after[n]) for n in names), len(names)


def test_one_step_of_each_stage_of_the_paper_preset_at_224(tmp_path):
    data = make_phantoms(tmp_path / "phantoms", size=96)
    one_step = ("--preset=paper", "--max_steps=1", "--batch_size=2", "--eval_batch_size=4")
    seg_args = segmenter_args(tmp_path / "seg", data, *one_step, "--pretrained=false", "--segmentation_size=224")
    seg = run_segmenter(parse_config(SegmenterConfig, seg_args))
    torch.manual_seed(0)  # the run's seed: the same initial weights the stage started from
    initial = create_model("paper", segmentation_size=[224, 224]).state_dict()
    after_stage1 = weights(seg / "checkpoint.pt")
    trained, total = changed(initial, after_stage1, "segmenter.")
    assert trained > 0.9 * total  # every layer with a gradient moved (a few buffers/unused may not)
    assert changed(initial, after_stage1, "classifier.")[0] == 0  # stage 1 leaves the classifier alone
    assert all(torch.isfinite(t).all() for t in after_stage1.values() if t.is_floating_point())

    cls = run_classifier(parse_config(ClassifierConfig, classifier_args(tmp_path / "cls", seg, *one_step, "--image_size=224")))
    checkpoint = load_checkpoint(cls / "checkpoint.pt")
    assert checkpoint["state"]["step"] == 1 and checkpoint["model_config"]["classifier_encoder"] == "densenet201"
    assert checkpoint["model_config"]["image_size"] == [224, 224]
    after_stage2 = checkpoint["model"]
    trained, total = changed(after_stage1, after_stage2, "classifier.")
    assert trained > 0.9 * total
    assert changed(after_stage1, after_stage2, "segmenter.")[0] == 0  # stage 2 leaves the segmenter alone
    state = checkpoint["optimizer"]["state"]
    assert state and all(float(s["step"]) == 1.0 for s in state.values())
    assert all(math.isfinite(float(t.abs().sum())) for t in after_stage2.values() if t.is_floating_point())
