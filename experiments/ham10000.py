"""The real-data model: the ``small`` preset learned from HAM10000 and ISIC 2018 Task 1, on a CPU.

    python -m train ham10000                 # → checkpoints/dermfuse-small-ham10000/ (the app's default)

One command, resumable across sessions (run it again: finished stages are kept, an interrupted one
resumes from its checkpoint; ``--fresh`` starts over):

1. Stage 1, the segmenter, on the real expert masks of HAM10000 (Tschandl) and ISIC 2018 Task 1,
   split once by lesion (``splits.csv``: 70 / 15 / 15, grouped by ``lesion_id``, stratified by label).
2. Stage 2, the 7-class classifier, on the HAM10000 images of the same split (ISIC 2018 Task 1 has no
   HAM10000 labels and stays out), lesion images from the stage-1 masks, class-weighted loss, each
   metadata field dropped at random in training (the model config's ``metadata_dropout``), calibrated
   on the validation split, OOD gate fitted on training images. Its image stream sees each frame's
   central square (``image_framing``), as the shared copy's images are cut from the 600×450 originals.
3. Scoring through the pipeline (``dermfuse evaluate``'s path, the app's masks): the HAM10000 test
   split (classification with and without metadata, segmentation), the ISIC 2018 Task 1 test split
   (segmentation), and the 140 PH2 images as a cross-dataset segmentation check (never trained on).
4. Export with its model card to ``--out``. The weights are stored in fp16 (half the size) when no
   calibrated probability on 64 test images moves by more than 0.01 through the rounding, else in
   fp32; the card says which, with the measured change (``--half=false`` skips the check: fp32).
5. The assessability gate fitted on the exported model and measured per source (``python -m train gate``).

Where the shipped weights were made otherwise than by one fresh run (a run continued with more epochs,
a stage swapped in), ``<work>/history.txt`` says how, and the model card repeats it.

A user with the full-size datasets points ``--ham10000`` and ``--isic2018_task1`` at them: the
readers take any image size. ``--ph2=''`` skips the cross-dataset check.
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

import numpy as np
import pandas as pd
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dermfuse import DermFuse, vocab
from dermfuse.data import read_dataset, read_manifest
from dermfuse.evaluate import evaluate
from dermfuse.models.dermfuse import WEIGHTS_FILE
from dermfuse.pipeline import Case, DermFusePipeline
from experiments.demo import stage_state
from experiments.gate import GateConfig, run_gate
from publish.push import export
from train.checkpoint import MODEL_DIR, model_folder
from train.classifier import run_classifier
from train.config import ClassifierConfig, SegmenterConfig, make_config, parse_settings
from train.data import MANIFEST
from train.segmenter import run_segmenter

NAME = "dermfuse-small-ham10000"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HALF_TOLERANCE = 0.01  # largest probability change fp16 storage may cause
HISTORY = "history.txt"  # in the work folder: how the weights were made, where that differs from one fresh run


@dataclass
class HAM10000Config:
    """Settings of ``python -m train ham10000``."""

    stage = "ham10000"
    ham10000: str = str(SHARED / "HAM10000")  # HAM10000 with HAM10000_segmentations_lesion_tschandl/
    isic2018_task1: str = str(SHARED / "ISIC2018_Task1")  # ISIC 2018 Task 1 training images and masks ('' to leave out)
    ph2: str = str(SHARED / "real")  # PH2 images with masks: cross-dataset segmentation check ('' to skip)
    out: str = f"checkpoints/{NAME}"  # where the finished model goes
    work: str = "runs/ham10000"  # both stages' run folders and the evaluation
    preset: str = "small"
    seed: int = 0
    workers: int = 2  # DataLoader workers
    half: bool = True  # store the weights in fp16 if no probability moves by more than 0.01, else in fp32
    fresh: bool = False  # delete the work folder first
    gate: bool = True  # fit the assessability gate on the exported model (experiments/gate.py; needs ../shared/data)
    progress: bool = True

    def __post_init__(self):
        for name in ("ham10000", "isic2018_task1", "ph2"):
            folder = getattr(self, name)
            if folder and not Path(folder).is_dir():
                raise FileNotFoundError(f"--{name}={folder}: no such folder (pass '' to leave it out, except --ham10000)")
        if not self.ham10000:
            raise ValueError("--ham10000 is required: the classifier learns from HAM10000")


def train_stages(config: HAM10000Config) -> tuple[Path, Path]:
    """Stage 1 then stage 2, each skipped when finished and resumed when interrupted; the run folders."""
    work = Path(config.work)
    common = dict(seed=config.seed, workers=config.workers, progress=config.progress)
    segmenter_run = work / "segmenter"
    state = stage_state(segmenter_run)
    if state != "done":
        data = ",".join(folder for folder in (config.ham10000, config.isic2018_task1) if folder)
        run_segmenter(make_config(SegmenterConfig, config.preset, out=str(segmenter_run), resume=state == "resume",
                                  data=data, **common))  # fmt: skip
    classifier_run = work / "classifier"
    state = stage_state(classifier_run)
    if state != "done":
        run_classifier(make_config(ClassifierConfig, config.preset, out=str(classifier_run), resume=state == "resume",
                                   segmenter=str(segmenter_run), classes=",".join(vocab.HAM10000_CLASSES), name=NAME,
                                   image_framing="central_square", **common))  # fmt: skip
    return segmenter_run, classifier_run


def score(pipeline: DermFusePipeline, config: HAM10000Config, manifest: pd.DataFrame) -> dict:
    """Every shipped number, through the pipeline: the test splits per source, and PH2 cross-dataset."""
    test = manifest[manifest["split"] == "test"]
    results = {}
    ham = test[test["source"] == "ham10000"].reset_index(drop=True)
    metrics, _ = evaluate(pipeline, ham, progress=config.progress)
    metrics["command"] = (f"dermfuse evaluate {os.path.relpath(config.ham10000)} --model {config.out} --manifest {config.out}/{MANIFEST} "
                          "--split test --out evaluation")  # fmt: skip
    results["pipeline_test"] = metrics
    segmentation = {"ham10000_test": metrics.get("segmentation")}
    isic = test[test["source"] == "isic2018_task1"].reset_index(drop=True)
    if len(isic):
        segmentation["isic2018_task1_test"] = evaluate(pipeline, isic, progress=config.progress)[0].get("segmentation")
    if config.ph2:
        ph2 = read_dataset(config.ph2)
        ph2_metrics = evaluate(pipeline, ph2[ph2["mask_path"].notna()].reset_index(drop=True), progress=config.progress)[0]
        segmentation["ph2_all_cross_dataset"] = ph2_metrics.get("segmentation")
        # PH2 holds melanomas and nevi only: the melanoma score's one-vs-rest ROC there is melanoma vs nevus.
        melanoma = ph2_metrics["classification"]["per_class"]["mel"]
        results["ph2_melanoma_vs_nevus"] = {"images": ph2_metrics["images"], "auc": melanoma["auc"],
                                            "sensitivity_at_80_specificity": melanoma["sensitivity_at_80_specificity"]}
    results["segmentation_by_source"] = segmentation
    return results


def half_rounded(model: DermFuse, kept_below: int = 0) -> DermFuse:
    """A copy of ``model`` whose weights went through fp16, as fp16 storage would give them back.

    Tensors of fewer than ``kept_below`` values (biases, norms, batch-norm statistics, embeddings, small kernels)
    stay fp32: mixed storage, which costs little space."""
    rounded = DermFuse(**model.config)
    rounded.load_state_dict({k: v.half().float() if v.is_floating_point() and v.numel() >= kept_below else v
                             for k, v in model.state_dict().items()})
    return rounded


def stored_bytes(model: DermFuse, kept_below: int | None = None) -> int:
    """The weights' size on disk without the file's header: fp32 throughout (``kept_below=None``), else fp16
    for floating tensors of at least ``kept_below`` values."""
    def size(tensor) -> int:
        half = tensor.is_floating_point() and kept_below is not None and tensor.numel() >= kept_below
        return tensor.numel() * (2 if half else tensor.element_size())

    return sum(size(tensor) for tensor in model.state_dict().values())


def half_agreement(model: DermFuse, manifest: pd.DataFrame, images: int = 64) -> float:
    """Largest change of any calibrated probability on ``images`` test images when the weights go through fp16."""
    test = manifest[(manifest["split"] == "test") & manifest["label"].notna()].head(images)
    rounded = half_rounded(model)
    paths = test["image_path"].tolist()
    before = [r.probabilities for r in DermFusePipeline(model, fast=False).predict([Case(p) for p in paths])]
    after = [r.probabilities for r in DermFusePipeline(rounded, fast=False).predict([Case(p) for p in paths])]
    return float(np.abs(np.array(before) - np.array(after)).max())


def store_half(folder: Path) -> None:
    """Rewrite ``folder``'s weights in fp16 (loading casts them back to the model's fp32)."""
    path = folder / WEIGHTS_FILE
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata=metadata)


def training_minutes(*runs: Path) -> float:
    """Minutes the runs' epochs took, over every session that worked on them (from their metrics.json)."""
    seconds = 0.0
    for run in runs:
        history = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["epochs"]
        seconds += sum(row["seconds"] for row in history)
    return seconds / 60


def run_ham10000(config: HAM10000Config) -> Path:
    """Build the real-data checkpoint; return ``config.out``."""
    started = time.monotonic()
    work = Path(config.work)
    if config.fresh and work.exists():
        shutil.rmtree(work)
    segmenter_run, classifier_run = train_stages(config)
    manifest = read_manifest(classifier_run / MANIFEST)
    model_dir = str(model_folder(classifier_run / MODEL_DIR))
    results = score(DermFusePipeline.from_pretrained(model_dir), config, manifest)
    half = False
    if config.half:
        change = half_agreement(DermFuse.from_pretrained(model_dir), manifest)
        half = change <= HALF_TOLERANCE
        results["storage"] = {"dtype": "float16" if half else "float32", "fp16_max_probability_change": change,
                              "tolerance": HALF_TOLERANCE}
        print(f"fp16 storage moves a probability by at most {change:.4f}: "
              + ("stored in fp16" if half else f"more than {HALF_TOLERANCE}, stored in fp32"))
    minutes = (time.monotonic() - started) / 60
    trained = training_minutes(segmenter_run, classifier_run)
    reproduce = {
        "command": "python -m train ham10000",
        "wall_time": f"{trained:.0f} minutes of training epochs (both stages, all sessions) + {minutes:.0f} minutes "
                     "for this invocation's remaining stages, scoring and export",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
    }
    history = work / HISTORY
    if history.is_file():  # written by hand when a run was continued or assembled across sessions
        reproduce["history"] = history.read_text(encoding="utf-8").strip()
    out = export(classifier_run, config.out, reproduce=reproduce, results=results)
    if half:
        store_half(out)
    if config.gate:
        run_gate(GateConfig(model=str(out), data=str(Path(config.ham10000).parent)))
    print(f"real-data model in {out} ({minutes:.1f} minutes)")
    return out


def main(argv: list[str] | None = None) -> int:
    run_ham10000(parse_settings(HAM10000Config, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
