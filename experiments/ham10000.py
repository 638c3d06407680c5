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
   (segmentation; and, with ``--isic2019_tables``, classification on images from other clinics, their
   ISIC 2019 diagnoses: nevus, melanoma, benign keratosis), and the 140 PH2 images as a cross-dataset
   check (never trained on).
   With ``--half`` (the default) the trained weights are first rounded to fp16, after their calibration:
   the rounded model is the one scored and shipped, so every number is the stored file's. How far the
   rounding moved calibrated probabilities against the unrounded weights, on the first ``--half_images``
   test images on each compute path, is measured and reported beside them (``storage``): it is not
   under 0.01 (this model reacts to changes that small: ``experiments/stability.py``), which is why the
   rounded model is measured again rather than taken to be the same.
4. Export with its model card to ``--out``, the weights in fp16 (half the size; loaded as fp32).
5. What the model stores after training, each by its own study (``experiments/after_training.py``): the
   assessability gate, the skin-tone bands, the melanoma operating points, and the least image side, sharpness
   and lesion contrast under which an image is not judged; then the gate measured per source with every rule.
   Their numbers go to ``docs/results/`` for the default ``--out``, else to ``<work>/results/``.

``--rescore`` skips 1, 2 and 4: it scores the model already in ``--out`` again, in place (rounding its
weights first if they are fp32 and ``--half``), and rewrites its metrics and card; the steps that fit
on a model's outputs (those of 5, and the compute paths) are then run again by their own commands.

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
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dermfuse import DermFuse, vocab
from dermfuse.data import read_dataset, read_manifest
from dermfuse.evaluate import evaluate, table_cases
from dermfuse.metrics import binary_auc, sensitivity_at_specificity
from dermfuse.models.dermfuse import WEIGHTS_FILE
from dermfuse.pipeline import DermFusePipeline
from experiments.demo import stage_state
from experiments.after_training import measure_after_training
from experiments.isic_rows import isic_labelled, with_splits
from publish.push import export, rewrite_card
from train.checkpoint import MODEL_DIR, model_folder, write_json
from train.classifier import run_classifier
from train.config import ClassifierConfig, SegmenterConfig, make_config, parse_settings
from train.data import MANIFEST
from train.segmenter import run_segmenter

NAME = "dermfuse-small-ham10000"
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HALF_TOLERANCE = 0.01  # largest probability change fp16 storage may cause
HISTORY = "history.txt"  # in the work folder: how the weights were made, where that differs from one fresh run


@dataclass
class HAM10000Config:
    """Settings of ``python -m train ham10000``."""

    stage = "ham10000"
    ham10000: str = str(SHARED / "HAM10000")  # HAM10000 with HAM10000_segmentations_lesion_tschandl/
    isic2018_task1: str = str(SHARED / "ISIC2018_Task1")  # ISIC 2018 Task 1 training images and masks ('' to leave out)
    ph2: str = str(SHARED / "real")  # PH2 images with masks: cross-dataset segmentation check ('' to skip)
    # ISIC_2019_Training_GroundTruth.csv and _Metadata.csv: the ISIC 2018 Task 1 test images' diagnoses and patient
    # data, to score the classifier on images from other clinics ('' to skip)
    isic2019_tables: str = str(SHARED)
    out: str = f"checkpoints/{NAME}"  # where the finished model goes
    work: str = "runs/ham10000"  # both stages' run folders and the evaluation
    preset: str = "small"
    flip_views: int = 1  # the classifier's score: mean logits over 1, 2, 4 or 8 flipped views (dermfuse/models/flips.py)
    seed: int = 0
    workers: int = 2  # DataLoader workers
    half: bool = True  # round the trained weights to fp16 and ship (and score) the rounded model; false: fp32
    half_images: int = 300  # test images on which the rounding's change against the unrounded weights is measured
    rescore: bool = False  # score the model already in --out again, in place, without training (see the docstring)
    fresh: bool = False  # delete the work folder first
    after_training: bool = True  # then the gate and the other values stored after training (experiments/after_training.py)
    progress: bool = True

    def __post_init__(self):
        for name in ("ham10000", "isic2018_task1", "ph2"):
            folder = getattr(self, name)
            if folder and not Path(folder).is_dir():
                raise FileNotFoundError(f"--{name}={folder}: no such folder (pass '' to leave it out, except --ham10000)")
        tables = Path(self.isic2019_tables) / "ISIC_2019_Training_GroundTruth.csv"
        if self.isic2019_tables and self.isic2018_task1 and not tables.is_file():
            raise FileNotFoundError(f"--isic2019_tables={self.isic2019_tables}: no {tables.name} there (the ISIC 2018 Task 1 "
                                    "images' diagnoses; pass '' to leave out the check on other clinics)")
        if not self.ham10000:
            raise ValueError("--ham10000 is required: the classifier learns from HAM10000")
        if self.half and self.half_images < 1:
            raise ValueError(f"--half_images={self.half_images}: the rounding's change is measured on at least one test "
                             "image (or ship fp32 weights with --half=false)")


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
                                   image_framing="central_square", flip_views=config.flip_views, **common))  # fmt: skip
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
        if config.isic2019_tables:  # their diagnoses and patient data: the classifier on images from other clinics
            isic = isic_labelled(isic, Path(config.isic2019_tables), splits=("test",), every_row=False)
        isic_metrics, isic_arrays = evaluate(pipeline, isic, progress=config.progress)
        segmentation["isic2018_task1_test"] = isic_metrics.get("segmentation")
        if "classification" in isic_metrics:
            results["isic2018_task1_test_classification"] = other_clinics(isic_metrics, isic_arrays, list(pipeline.model.classes))
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


def other_clinics(metrics: dict, arrays: dict, classes: list[str]) -> dict:
    """The classifier on labelled images from other clinics than HAM10000's (``evaluate``'s output on ISIC 2018 Task 1's
    test split, labelled nevus, melanoma or benign keratosis by ISIC 2019): the accuracy and calibration of its
    seven-class answer, balanced accuracy over the labels present, melanoma against nevus, and whether the OOD warning
    picked out the images it judged worse (accuracy on the flagged images and on the others)."""
    labels, calibrated = arrays["labels"], arrays["calibrated"]
    mel, nv = classes.index("mel"), classes.index("nv")
    pair = np.isin(labels, [mel, nv])
    melanoma = labels[pair] == mel
    cls, without = metrics["classification"], metrics["classification_without_metadata"]
    numbers = {
        "images": int(len(labels)),
        "diagnoses": {classes[k]: int((labels == k).sum()) for k in sorted(set(labels.tolist()))},
        "accuracy": cls["accuracy"], "balanced_accuracy": cls["balanced_accuracy"], "ece": cls["ece"],
        "balanced_accuracy_without_metadata": without["balanced_accuracy"],
        "melanoma_vs_nevus": {"images": int(pair.sum()), "melanomas": int(melanoma.sum()),
                              "auc": binary_auc(melanoma, calibrated[pair, mel]),
                              "sensitivity_at_80_specificity": sensitivity_at_specificity(melanoma, calibrated[pair, mel])},
    }
    flagged = arrays.get("ood_flagged")
    if flagged is not None:
        correct = calibrated.argmax(axis=1) == labels
        numbers["ood_flagged"] = {"images": int(flagged.sum()),
                                  "accuracy_flagged": float(correct[flagged].mean()) if flagged.any() else None,
                                  "accuracy_not_flagged": float(correct[~flagged].mean()) if not flagged.all() else None}
    return numbers


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


def fp16_exact(model: DermFuse) -> bool:
    """Whether every floating weight of ``model`` is an fp16 value (rounding it to fp16 changes nothing)."""
    return all(torch.equal(v, v.half().float()) for v in model.state_dict().values() if v.is_floating_point())


def rounding_change(model: DermFuse, rounded: DermFuse, rows: pd.DataFrame, images: int) -> dict:
    """How far ``rounded`` (``model``'s weights through fp16) moves calibrated probabilities against ``model`` on
    the first ``images`` labelled HAM10000 test rows, with their patient data, on each compute path this machine has."""
    from experiments.compute_paths import storage_agreements  # it imports this module

    test = rows[(rows["split"] == "test") & (rows["source"] == "ham10000") & rows["label"].notna()].head(images)
    return storage_agreements(model, rounded, table_cases(test))


def shipped_model(model: DermFuse, rows: pd.DataFrame, config: HAM10000Config) -> tuple[DermFuse, dict]:
    """The model that ships, rounded to fp16 with ``config.half``, and every number measured on it (``score``), with
    how it is stored (``storage``: the rounding's measured change where the weights were rounded here)."""
    storage: dict = {"dtype": "float16" if config.half else "float32"}
    if config.half and not fp16_exact(model):
        rounded = half_rounded(model)
        storage["rounding"] = {"images": config.half_images, "paths": rounding_change(model, rounded, rows, config.half_images)}
        for name, numbers in storage["rounding"]["paths"].items():
            print(f"fp16 rounding, {name} path: largest probability change {numbers['max_change']:.4f}, "
                  f"{numbers[f'moved_over_{HALF_TOLERANCE}']} of {numbers['images']} images over {HALF_TOLERANCE}")
        model = rounded
    results = score(DermFusePipeline(model), config, rows)
    results["storage"] = storage
    return model, results


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
    _, results = shipped_model(DermFuse.from_pretrained(model_dir), manifest, config)
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
    if config.half:
        store_half(out)  # exactly the rounded model scored above
    if config.after_training:
        measure_after_training(out, Path(config.ham10000).parent, results_folder(config))
    print(f"real-data model in {out} ({minutes:.1f} minutes)")
    return out


def results_folder(config: HAM10000Config) -> Path:
    """Where the studies after training write their numbers: the repository's ``docs/results/`` for the shipped model
    (``docs/RESULTS.md`` is made from them), the work folder for a model exported anywhere else."""
    if Path(config.out).resolve() == (ROOT / "checkpoints" / NAME).resolve():
        return ROOT / "docs" / "results"
    return Path(config.work) / "results"


def rescore(config: HAM10000Config) -> Path:
    """``--rescore``: score the model in ``config.out`` again, in place, on the split in its ``splits.csv`` (rounding its
    weights to fp16 first where they are fp32 and ``config.half``); its metrics and card are rewritten. Where the weights
    are not rewritten, the record of how they were stored (and rounded) stays."""
    folder = Path(config.out)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"--out={folder}: no exported model there (no {MANIFEST}); --rescore scores a model "
                                "`python -m train ham10000` exported")  # fmt: skip
    rows = with_splits(folder, [Path(path) for path in (config.ham10000, config.isic2018_task1) if path])
    _, results = shipped_model(DermFuse.from_pretrained(str(folder)), rows, config)
    rounded = "rounding" in results["storage"]
    if rounded:
        store_half(folder)  # exactly the rounded model scored above
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    if not rounded and "storage" in metrics:
        del results["storage"]  # the file was not rewritten: how it was stored (and rounded) still holds
    metrics.update(results)
    write_json(metrics_path, metrics)
    rewrite_card(folder)
    print(f"{folder} scored again: balanced accuracy {results['pipeline_test']['classification']['balanced_accuracy']:.4f}, "
          f"Dice {results['pipeline_test']['segmentation']['dice']:.4f}; now run what it stores after training and its "
          "compute paths again (the commands in experiments/after_training.py, and `python -m train compute-paths`)")
    return folder


def main(argv: list[str] | None = None) -> int:
    config = parse_settings(HAM10000Config, sys.argv[1:] if argv is None else argv)
    if config.rescore:
        rescore(config)
        return 0
    run_ham10000(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
