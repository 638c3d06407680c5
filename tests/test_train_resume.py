"""Crash safety: a stopped run resumes to exactly the weights of an uninterrupted one; SIGKILL mid-save loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_support import classifier_args, make_phantoms, segmenter_args, weights

from train.checkpoint import SAVE_DELAY_ENV, load_checkpoint
from train.classifier import run_classifier
from train.config import CONFIG_FILE, ClassifierConfig, SegmenterConfig, parse_config, save_config
from train.segmenter import run_segmenter

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

# 14 training images in batches of 4: 3 steps per epoch, 2 epochs = 6 steps; checkpoints every 2.
SEGMENTER = ("--epochs=2", "--checkpoint_every=2")
CLASSIFIER = ("--epochs=2", "--checkpoint_every=2", "--balance=sampler")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_phantoms(tmp_path_factory.mktemp("resume") / "phantoms")


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    """Both stages straight through: the reference weights."""
    root = tmp_path_factory.mktemp("straight")
    seg = run_segmenter(parse_config(SegmenterConfig, segmenter_args(root / "seg", data, *SEGMENTER)))
    cls = run_classifier(parse_config(ClassifierConfig, classifier_args(root / "cls", seg, *CLASSIFIER)))
    return seg, cls


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_segmenter_stopped_mid_epoch_resumes_to_identical_weights(data, uninterrupted, tmp_path):
    out = tmp_path / "seg"
    run_segmenter(parse_config(SegmenterConfig, segmenter_args(out, data, *SEGMENTER, "--max_steps=2")))
    stopped = load_checkpoint(out / "checkpoint.pt")
    assert stopped["state"]["step"] == 2 and stopped["state"]["position"] == 2 and stopped["state"]["stopped"] == "max_steps"
    run_segmenter(parse_config(SegmenterConfig, ["--resume", f"--out={out}", "--max_steps=0"]))
    assert load_checkpoint(out / "checkpoint.pt")["state"]["step"] == 6
    assert_same_weights(weights(out / "checkpoint.pt"), weights(uninterrupted[0] / "checkpoint.pt"))
    resumed, straight = (load_checkpoint(run / "checkpoint.pt")["state"]["history"] for run in (out, uninterrupted[0]))
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in straight]


def test_classifier_resumes_to_identical_weights_even_with_another_worker_count(uninterrupted, tmp_path):
    seg, straight = uninterrupted
    out = tmp_path / "cls"
    run_classifier(parse_config(ClassifierConfig, classifier_args(out, seg, *CLASSIFIER, "--max_steps=4")))
    assert load_checkpoint(out / "checkpoint.pt")["state"]["step"] == 4  # epoch 2, batch 1
    masks_before = {p.name: p.stat().st_mtime_ns for p in (out / "masks").glob("*.png")}
    # Resume with a DataLoader worker process: each sample's augmentation is seeded by its position, not its worker.
    run_classifier(parse_config(ClassifierConfig, ["--resume", f"--out={out}", "--max_steps=0", "--workers=1"]))
    assert_same_weights(weights(out / "checkpoint.pt"), weights(straight / "checkpoint.pt"))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "masks").glob("*.png")} == masks_before  # cache reused


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it_afresh(data, tmp_path, capsys):
    out = tmp_path / "seg"
    out.mkdir()
    # What a run killed before its first checkpoint leaves: its folder with the saved settings, no checkpoint.
    save_config(parse_config(SegmenterConfig, segmenter_args(out, data, *SEGMENTER, "--max_steps=1")), out / CONFIG_FILE)
    run_segmenter(parse_config(SegmenterConfig, ["--resume", f"--out={out}"]))
    note = "holds no checkpoint.pt yet (the run stopped before its first checkpoint): starting it afresh"
    assert note in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.pt")["state"]["step"] == 1


def test_resume_without_a_run_folder_says_to_rerun_without_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="rerun without --resume"):
        parse_config(SegmenterConfig, ["--resume", f"--out={tmp_path / 'never-started'}"])


def test_sigkill_in_the_middle_of_a_save_leaves_the_last_checkpoint_loadable(data, tmp_path):
    out = tmp_path / "seg"
    run_segmenter(parse_config(SegmenterConfig, segmenter_args(out, data, *SEGMENTER, "--max_steps=2")))
    before = weights(out / "checkpoint.pt")
    # Resume in a subprocess whose saves stall between writing the temporary file and renaming it.
    env = {**os.environ, SAVE_DELAY_ENV: "60", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "train", "segmenter", "--resume", f"--out={out}", "--max_steps=0", "--checkpoint_every=1"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".checkpoint.pt.*.tmp")):
            assert process.poll() is None, "training ended before its first save"
            assert time.monotonic() < deadline, "no save started within 120 s"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert list(out.glob(".checkpoint.pt.*.tmp")), "the kill should have struck mid-save"
    survivor = load_checkpoint(out / "checkpoint.pt")
    assert survivor["state"]["step"] == 2
    assert_same_weights(survivor["model"], before)
    # And training resumes from it: the stray temporary file is cleaned up by the next save.
    run_segmenter(parse_config(SegmenterConfig, ["--resume", f"--out={out}", "--max_steps=3"]))
    assert load_checkpoint(out / "checkpoint.pt")["state"]["step"] == 3
    assert not list(out.glob(".checkpoint.pt.*.tmp"))
