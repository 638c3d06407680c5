"""A model's numbers on each compute path, and how far the paths and fp16 storage move its answers.

    python -m train compute-paths                                 # the default model, data in ../shared/data
    python -m train compute-paths --model=checkpoints/NAME --half_images=300

The pipeline runs on one of two paths (``dermfuse/pipeline.py``). The fast path has bf16 networks and
needs a CPU or GPU with bf16; the fp32 path runs everywhere else, e.g. on a CPU without bf16, as a
Space's may be. A model's card quotes one of them. This command puts the model's HAM10000 test split
(from its ``splits.csv``) through both paths, each with ``dermfuse evaluate``'s function, and reports:

- each path's classification, calibration and segmentation numbers;
- how often the two give the same top class, and how far each image's probabilities move
  (the largest change among its classes);
- where the weights are fp32, how far fp16 storage would move them on each path, over the first
  ``--half_images`` test images (fp16 storage is allowed where no probability moves by more than 0.01), and how far mixed storage
  does: fp16 but for the tensors of fewer than ``--kept_below`` values (biases, norms, batch-norm
  statistics, embeddings, small kernels), which stay fp32. For the images moved by more than 0.01, how
  many had their lesion box moved (a mask pixel flipped at its edge), and the file size of each storage.

The results go to ``<model>/metrics.json`` (``compute_paths``, so the card shows them),
``docs/results/compute_paths.json``, and the printed table. The CPU is named by what decides the
fast path's kernels: bf16 support and AMX.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dermfuse import DermFuse
from dermfuse.evaluate import evaluate, table_cases
from dermfuse.pipeline import DermFusePipeline, bf16_supported
from dermfuse.sources import DEFAULT_MODEL
from dermfuse.predict import predict_all
from experiments.ham10000 import HALF_TOLERANCE, fp16_exact, half_rounded, stored_bytes
from experiments.split_predictions import split_rows
from train.checkpoint import write_json
from train.config import parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "compute_paths.json"
MOVED = 0.05  # an image "moves" between paths when one of its probabilities changes by more than this
PATH_METRICS = (("segmentation", ("dice", "iou", "thresholded_jaccard")),
                ("classification", ("accuracy", "balanced_accuracy", "macro_auc", "ece")),
                ("classification_without_metadata", ("accuracy", "balanced_accuracy", "macro_auc", "ece")))


@dataclass
class ComputePathsConfig:
    """Settings of ``python -m train compute-paths``."""

    stage = "compute-paths"
    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (HAM10000/)
    half_images: int = 300  # test images for the fp16-storage checks on each path (0: skip them)
    kept_below: int = 4096  # mixed storage: floating tensors of fewer values stay fp32 (0: skip that check)
    out: str = str(RESULTS)

    def __post_init__(self):
        if self.half_images < 0:
            raise ValueError(f"--half_images={self.half_images}: a count of test images, 0 to skip the fp16 check")
        if self.kept_below < 0:
            raise ValueError(f"--kept_below={self.kept_below}: a count of values, 0 to skip the mixed-storage check")
        if not (Path(self.model) / "splits.csv").is_file():
            raise FileNotFoundError(f"--model={self.model}: no splits.csv there; the test split comes from the model's own")


def agreement(first: np.ndarray, second: np.ndarray) -> dict:
    """How far two (N, K) probability arrays for the same images differ: the share with the same top class,
    and per image the largest change among its classes (median, largest, count over ``MOVED``)."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"probabilities of shapes {first.shape} and {second.shape}: expected two equal (N, K) arrays")
    change = np.abs(first - second).max(axis=1)  # (N,)
    return {"images": len(change), "same_top_class": float(np.mean(first.argmax(1) == second.argmax(1))),
            "median_change": float(np.median(change)), "max_change": float(change.max()),
            f"moved_over_{MOVED}": int((change > MOVED).sum()), f"moved_over_{HALF_TOLERANCE}": int((change > HALF_TOLERANCE).sum())}


def storage_agreement(reference: list, pipeline: DermFusePipeline, cases: list) -> dict:
    """:func:`agreement` of ``reference`` diagnoses with ``pipeline``'s (the same model, its weights rounded) on
    ``cases``, and of the images moved by more than the fp16 tolerance, how many had their lesion box moved."""
    rounded = predict_all(pipeline, cases, progress=False, describe=False)
    before, after = (np.array([r.probabilities for r in results]) for results in (reference, rounded))
    numbers = agreement(before, after)
    moved = np.abs(before - after).max(axis=1) > HALF_TOLERANCE
    numbers[f"over_{HALF_TOLERANCE}_with_lesion_box_moved"] = sum(
        1 for over, first, second in zip(moved, reference, rounded) if over and first.lesion_box != second.lesion_box)
    return numbers


def storage_agreements(model: DermFuse, rounded: DermFuse, cases: list) -> dict:
    """:func:`storage_agreement` of ``rounded`` (``model`` with its weights stored otherwise) against ``model`` on
    ``cases``, on each compute path this machine has, by path name."""
    paths = {"fast": True, "fp32": False} if bf16_supported(torch.device("cpu")) else {"fp32": False}
    numbers = {}
    for name, fast in paths.items():
        reference = predict_all(DermFusePipeline(model, fast=fast), cases, progress=False, describe=False)
        numbers[name] = storage_agreement(reference, DermFusePipeline(rounded, fast=fast), cases)
    return numbers


def same_kind_of_cpu(paths: dict | None, cpu: dict) -> dict | None:
    """The numbers in ``paths`` (a model's ``compute_paths``) that ``dermfuse evaluate`` on ``cpu`` (a
    :func:`cpu_description`) should reproduce: those of the path this CPU runs, where they were measured on a CPU
    with the same bf16 kernels (bf16 and AMX alike; fp32 numbers do not depend on them); else None."""
    if not paths:
        return None
    if not cpu["bf16"]:
        return paths["paths"].get("fp32")
    measured = paths["cpu"]
    if (measured["bf16"], measured["amx"]) == (cpu["bf16"], cpu["amx"]):
        return paths["paths"].get("fast")
    return None


def cpu_description() -> dict:
    """What decides the fast path's kernels on this machine."""
    cpu = torch.device("cpu")
    return {"machine": platform.machine(), "threads": torch.get_num_threads(), "bf16": bf16_supported(cpu),
            "amx": bool(torch.cpu._is_amx_tile_supported()), "torch": torch.__version__}


def run_compute_paths(config: ComputePathsConfig) -> dict:
    started = time.monotonic()
    model = DermFuse.from_pretrained(config.model)
    # fp16 and mixed storage's checks, unless the weights are fp16 values already (rounding them changes nothing)
    half_images, kept_below = (0, 0) if fp16_exact(model) else (config.half_images, config.kept_below)
    rounded, mixed = (half_rounded(model), half_rounded(model, kept_below)) if half_images else (None, None)
    test = split_rows(config.model, config.data, "test")
    paths = {"fp32": False}
    if bf16_supported(torch.device("cpu")):
        paths = {"fast": True, **paths}
    results: dict = {"images": len(test), "cpu": cpu_description(), "paths": {}, "half_storage": {}, "mixed_storage": {}}
    if half_images:
        results["storage_mib"] = {"fp32": stored_bytes(model) / 2**20, "fp16": stored_bytes(model, 0) / 2**20}
        if kept_below:
            results["storage_mib"]["mixed"] = stored_bytes(model, kept_below) / 2**20
            results["kept_below"] = kept_below
    calibrated = {}
    for name, fast in paths.items():
        metrics, arrays = evaluate(DermFusePipeline(model, fast=fast), test, progress=False)
        # The shape of the card's ``pipeline_test``, so either can be the reference a re-run is checked against.
        results["paths"][name] = {"images": metrics["images"],
                                  **{part: {key: (metrics.get(part) or {}).get(key) for key in keys} for part, keys in PATH_METRICS}}
        calibrated[name] = arrays["calibrated"]
        if half_images:  # the same first images, with their patient data, from the rounded weights
            first = table_cases(test.head(half_images))
            reference = predict_all(DermFusePipeline(model, fast=fast), first, progress=False, describe=False)
            results["half_storage"][name] = storage_agreement(reference, DermFusePipeline(rounded, fast=fast), first)
            if kept_below:
                results["mixed_storage"][name] = storage_agreement(reference, DermFusePipeline(mixed, fast=fast), first)
        print(f"{name}: {json.dumps(results['paths'][name])}", flush=True)
    if len(calibrated) == 2:
        results["fast_vs_fp32"] = agreement(calibrated["fast"], calibrated["fp32"])
    results["command"] = "python -m train compute-paths" + ("" if config.model == f"checkpoints/{DEFAULT_MODEL}" else f" --model={config.model}")
    results["minutes"] = (time.monotonic() - started) / 60

    from publish.push import rewrite_card

    metrics_path = Path(config.model) / "metrics.json"
    stored = json.loads(metrics_path.read_text(encoding="utf-8"))
    stored["compute_paths"] = {k: v for k, v in results.items() if k != "minutes"}
    write_json(metrics_path, stored)
    rewrite_card(config.model)
    write_json(config.out, {"model": config.model, **results})
    print(compute_paths_table(results))
    return results


def compute_paths_table(results: dict) -> str:
    """Markdown: each path's numbers, with fp16 and mixed storage's effect on it, and each storage's size."""
    def storage(numbers: dict | None) -> str:
        if not numbers:
            return "not measured"
        return (f"{numbers['max_change']:.3f}, {numbers[f'moved_over_{HALF_TOLERANCE}']} of {numbers['images']}, "
                f"{numbers['same_top_class']:.1%}")

    lines = ["| path | balanced accuracy | without metadata | macro AUC | ECE | Dice | fp16 storage: largest change, images over 0.01, "
             "same top class | mixed storage: the same |", "|---|---|---|---|---|---|---|---|"]
    names = {"fast": "fast (bf16 networks)", "fp32": "fp32"}
    for name, numbers in results["paths"].items():
        cls, without, dice = numbers["classification"], numbers["classification_without_metadata"], numbers["segmentation"]["dice"]
        lines.append(f"| {names.get(name, name)} | {cls['balanced_accuracy']:.4f} | {without['balanced_accuracy']:.4f} | "
                     f"{cls['macro_auc']:.4f} | {cls['ece']:.4f} | {'–' if dice is None else f'{dice:.4f}'} | "
                     f"{storage(results['half_storage'].get(name))} | {storage(results.get('mixed_storage', {}).get(name))} |")
    sizes = results.get("storage_mib")
    if sizes:
        lines.append("\nWeights on disk: " + ", ".join(f"{kind} {mib:.1f} MiB" for kind, mib in sizes.items())
                     + (f" (mixed: tensors under {results['kept_below']} values in fp32)" if "mixed" in sizes else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run_compute_paths(parse_settings(ComputePathsConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
