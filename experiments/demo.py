"""The demo checkpoint: the ``tiny`` preset trained end to end on phantoms, on a CPU, in minutes.

    python -m train demo                  # → checkpoints/dermfuse-tiny-phantom/

One command: generate a phantom set (balanced classes, default difficulty) into the work folder,
train stage 1 (segmenter) and stage 2 (classifier, calibrated) on it with the recipes below,
evaluate both on the held-out phantom test split, and export the model with its card
(``publish.push.export``) to ``--out``: ``config.json``, ``model.safetensors``, ``README.md`` (which
says, at the top, that it was trained on synthetic phantoms and is not for diagnosis),
``metrics.json``, ``splits.csv`` and the figures. This is the app's default model.

Each stage has a time budget (``time_limit``), so the whole command stays within about 20 minutes
on a 2-core CPU even when the machine is busy; the card records the wall time it took. Run again
after an interruption and finished stages are kept, an interrupted one resumes from its
checkpoint (``--fresh`` starts over).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dermfuse.data import read_manifest
from dermfuse.evaluate import evaluate
from dermfuse.pipeline import DermFusePipeline
from train.checkpoint import CHECKPOINT, MODEL_DIR, model_folder
from train.classifier import run_classifier
from train.config import ClassifierConfig, SegmenterConfig, make_config, parse_settings
from train.data import MANIFEST, PHANTOM_DIR
from publish.push import export
from train.segmenter import run_segmenter

NAME = "dermfuse-tiny-phantom"
# The recipes, on top of the tiny preset's (train/config.py). Chosen with short runs on a 2-core CPU.
SEGMENTER_RECIPE = dict(epochs=4, batch_size=16, lr=3e-3, warmup_steps=20, time_limit=7.0, checkpoint_every=50)
CLASSIFIER_RECIPE = dict(epochs=12, batch_size=32, lr=2e-3, warmup_steps=30, time_limit=9.0, patience=4,
                         checkpoint_every=50, balance="sampler")  # fmt: skip


@dataclass
class DemoConfig:
    """Settings of ``python -m train demo``."""

    stage = "demo"
    out: str = f"checkpoints/{NAME}"  # where the finished model goes
    work: str = "runs/demo"  # phantoms, both stages' run folders
    phantoms: int = 2000  # images to generate (70 % train, 15 % val, 15 % test)
    phantom_size: int = 192
    difficulty: float = 0.5  # the phantom generator's default
    seed: int = 0
    workers: int = 1  # DataLoader workers (the 2-core CPU also computes)
    fresh: bool = False  # delete the work folder first
    progress: bool = True

    def __post_init__(self):
        if self.phantoms < 100:
            raise ValueError(f"--phantoms={self.phantoms}: the demo needs at least 100 images for three useful splits")


def stage_state(run: Path) -> str:
    """``done`` (the stage wrote its final metrics.json), ``resume`` (a checkpoint exists) or ``new``."""
    metrics = run / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text(encoding="utf-8")).get("finished"):
        return "done"
    return "resume" if (run / CHECKPOINT).is_file() else "new"


def pipeline_evaluation(classifier_run: Path, config: DemoConfig) -> dict:
    """The test split scored through ``DermFusePipeline`` (masks at each image's size, lesion images from
    them, calibrated scores): exactly what ``dermfuse evaluate`` computes, with the command that does it."""
    table = read_manifest(classifier_run / MANIFEST)
    test = table[table["split"] == "test"].reset_index(drop=True)
    pipeline = DermFusePipeline.from_pretrained(str(model_folder(classifier_run / MODEL_DIR)))
    metrics, _ = evaluate(pipeline, test, progress=config.progress)
    phantoms = Path(config.work) / "segmenter" / PHANTOM_DIR
    metrics["command"] = (
        f"python -m dermfuse.data.phantom --out {phantoms} --n {config.phantoms} --size {config.phantom_size} "
        f"--seed {config.seed} --difficulty {config.difficulty:g}   # only if the phantoms are gone\n"
        f"dermfuse evaluate {phantoms} --model {config.out} --manifest {config.out}/{MANIFEST} --split test --out evaluation"
    )
    return metrics


def run_demo(config: DemoConfig) -> Path:
    """Build the demo checkpoint; return ``config.out``."""
    started = time.monotonic()
    work = Path(config.work)
    if config.fresh and work.exists():
        shutil.rmtree(work)
    common = dict(seed=config.seed, workers=config.workers, progress=config.progress, precision="auto")

    segmenter_run = work / "segmenter"
    state = stage_state(segmenter_run)
    if state != "done":
        run_segmenter(make_config(SegmenterConfig, "tiny", out=str(segmenter_run), resume=state == "resume",
                                  phantoms=config.phantoms, phantom_size=config.phantom_size,
                                  phantom_difficulty=config.difficulty, **SEGMENTER_RECIPE, **common))  # fmt: skip

    classifier_run = work / "classifier"
    state = stage_state(classifier_run)
    if state != "done":
        run_classifier(make_config(ClassifierConfig, "tiny", out=str(classifier_run), resume=state == "resume",
                                   segmenter=str(segmenter_run), name=NAME, **CLASSIFIER_RECIPE, **common))  # fmt: skip

    evaluation = pipeline_evaluation(classifier_run, config)
    minutes = (time.monotonic() - started) / 60
    reproduce = {
        "command": "python -m train demo" + (f" --seed={config.seed}" if config.seed else ""),
        "wall_time": f"{minutes:.1f} minutes",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
    }
    out = export(classifier_run, config.out, reproduce=reproduce, results={"pipeline_test": evaluation})
    print(f"demo model in {out} ({minutes:.1f} minutes)")
    return out


def main(argv: list[str] | None = None) -> int:
    run_demo(parse_settings(DemoConfig, sys.argv[1:] if argv is None else argv))
    return 0
