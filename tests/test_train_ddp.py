"""Multi-process training: the same script under torchrun (2 processes, gloo on CPU) keeps identical replicas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_support import classifier_args, make_phantoms, segmenter_args

from dermfuse import DermFuse
from train.checkpoint import load_checkpoint
from train.runtime import replica_digest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_two_process_ddp_trains_both_stages_with_identical_replicas(tmp_path):
    data = make_phantoms(tmp_path / "phantoms")
    seg, cls = tmp_path / "seg", tmp_path / "cls"
    # 14 training images over 2 processes in batches of 2: 3 steps per epoch, each step sees 4 images.
    torchrun("segmenter", *segmenter_args(seg, data, "--batch_size=2", "--epochs=2", "--max_steps=4"))
    torchrun("classifier", *classifier_args(cls, seg, "--batch_size=2", "--epochs=1"))
    for run, part in ((seg, "segmenter"), (cls, "classifier")):
        metrics = json.loads((run / "metrics.json").read_text())
        digests = metrics["replica_digests"]
        assert len(digests) == 2 and digests[0] == digests[1], f"{part}: replicas differ"
        checkpoint = load_checkpoint(run / "checkpoint.pt")
        model = DermFuse(**checkpoint["model_config"])
        model.load_state_dict(checkpoint["model"])
        assert replica_digest(getattr(model, part)) == digests[0]  # the digests are of the weights that were saved
    assert load_checkpoint(seg / "checkpoint.pt")["state"]["step"] == 4
    assert load_checkpoint(cls / "checkpoint.pt")["state"]["step"] == 3
    assert len(list((cls / "masks").glob("*.png"))) == 28  # both processes predicted their share of the masks
