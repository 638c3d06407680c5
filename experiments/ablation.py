"""The ablation and the shortcut experiment: does each part of the model earn its place?

    python -m train ablation                                 # 5 variants × 3 seeds, tiny preset, CPU
    python -m train ablation --shortcut=mel:0.9              # the same, trained with a planted shortcut
    python -m train ablation --quick                         # one seed, short schedules (a smoke run)
    python -m train ablation --preset=paper --imagenet=false # the paper's sizes, on a GPU (offline: no ImageNet)

One phantom set, one split and one stage-1 segmenter (trained once, seed 0) serve every run; each
variant of ``VARIANTS`` (baseline, +lesion stream, +metadata, full, full with concatenation) is then
trained as stage 2 with the same recipe and budget for each seed, and scored on the test split
through ``DermFusePipeline`` with Grad-CAM (the app's path): balanced accuracy, macro AUC, per-class
recall, ECE, and the lesion focus of each stream (share of CAM mass inside the predicted mask).

With ``--shortcut=TARGET:STRENGTH`` the training phantoms carry violet marker ink correlated with
TARGET (``dermfuse.data.phantom.Shortcut``), and the test split is scored three times on the same
phantoms, re-rendered from the same seeds: with the training bias (``present``), with no ink
(``absent``) and with the bias flipped at full strength (``reversed``: ink on every phantom of the
other classes, on none of TARGET). A model that learnt the ink loses accuracy and
its image-stream CAM moves off the lesion; one that learnt the lesion does not.

Finished runs are kept: run the command again and only missing runs train (``--fresh`` starts over).
The summary goes to ``<report>/ablation.json`` (or ``shortcut.json``) with the figures beside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermfuse.data import load_image, read_manifest
from dermfuse.data.phantom import Shortcut, generate_dataset
from dermfuse.data.phantom.dataset import IMAGES_DIR
from dermfuse.evaluate import evaluate
from dermfuse.figures import grouped_bars, image_grid
from dermfuse.models.presets import VARIANTS
from dermfuse.pipeline import DermFusePipeline
from dermfuse.render import heat_overlay
from train.checkpoint import MODEL_DIR, model_folder, write_json
from train.classifier import MASK_DIR, run_classifier
from train.config import ClassifierConfig, SegmenterConfig, make_config, parse_settings
from train.data import MANIFEST
from experiments.demo import stage_state
from train.segmenter import run_segmenter

# Recipes per preset, on top of train/config.py's TRAINING_RECIPES; "quick" replaces some of them (one seed, short).
# tiny: about 2 minutes per run on a 2-core CPU, 30 runs for both experiments.
RECIPES = {
    "tiny": dict(phantoms=1400, phantom_size=192,
                 segmenter=dict(epochs=4, batch_size=16, lr=3e-3, warmup_steps=20, time_limit=4.0),
                 classifier=dict(epochs=6, batch_size=32, lr=2e-3, warmup_steps=20, patience=0)),
    "paper": dict(phantoms=10000, phantom_size=256,
                  segmenter=dict(epochs=20, patience=5),
                  classifier=dict(epochs=20, patience=0)),
}  # fmt: skip
QUICK = dict(phantoms=700, seeds="0", segmenter=dict(epochs=2, time_limit=1.5), classifier=dict(epochs=2))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the test split is scored
CONDITIONS = ("present", "absent", "reversed")  # the shortcut experiment's test renderings
DIGEST = "segmenter.sha256"  # written by the classifier's mask cache
GALLERY_VARIANTS = ("baseline", "full")  # compared in the shortcut experiment's CAM gallery
GALLERY_IMAGES = 2  # of the target class and of other classes each


@dataclass
class AblationConfig:
    """Settings of ``python -m train ablation``."""

    stage = "ablation"
    preset: str = "tiny"  # model preset and recipe: tiny (CPU) or paper (GPU)
    variants: str = ",".join(VARIANTS)  # comma-separated, from: baseline, lesion, metadata, full, concat
    seeds: str = "0,1,2"  # stage-2 seeds (the data, split and segmenter stay fixed)
    shortcut: str = ""  # TARGET:STRENGTH, e.g. mel:0.9: train with planted marker ink, test it absent and reversed
    quick: bool = False  # one seed, small data, short schedules (a smoke run: not evidence)
    phantoms: int = 0  # images in the phantom set (0: the recipe's)
    difficulty: float = 0.5
    data_seed: int = 0  # phantom set and split
    imagenet: bool = True  # ImageNet encoders where the preset uses them (paper); false trains from scratch offline
    out: str = ""  # run folder (default runs/ablation or runs/shortcut)
    report: str = ""  # where the summary JSON and the figures go (default: the run folder)
    workers: int = 1
    fresh: bool = False  # delete the run folder first
    progress: bool = True

    def __post_init__(self):
        if self.preset not in RECIPES:
            raise ValueError(f"--preset={self.preset}: expected one of {', '.join(RECIPES)}")
        unknown = [v for v in self.variant_list if v not in VARIANTS]
        if unknown or not self.variant_list:
            raise ValueError(f"--variants={self.variants}: expected names from {', '.join(VARIANTS)}")
        parse_seeds(QUICK["seeds"] if self.quick else self.seeds)
        if self.shortcut:
            self.shortcut_spec  # raises ValueError naming the problem
        if self.phantoms < 0 or (self.phantoms and self.phantoms < 140):
            raise ValueError(f"--phantoms={self.phantoms}: at least 140 (20 per class) for three useful splits")

    @property
    def variant_list(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]

    @property
    def seed_list(self) -> list[int]:
        return parse_seeds(QUICK["seeds"] if self.quick else self.seeds)

    @property
    def shortcut_spec(self) -> Shortcut | None:
        return Shortcut.parse(self.shortcut) if self.shortcut else None

    @property
    def experiment(self) -> str:
        return "shortcut" if self.shortcut else "ablation"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; ``ValueError`` naming the setting for anything else."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise ValueError(f"--seeds={text}: expected comma-separated integers, e.g. 0,1,2")
    return seeds


def recipe(config: AblationConfig) -> dict:
    """The preset's recipe with ``--quick`` and ``--phantoms`` applied."""
    base = RECIPES[config.preset]
    stages = {stage: {**base[stage], **(QUICK[stage] if config.quick else {})} for stage in ("segmenter", "classifier")}
    phantoms = config.phantoms or (QUICK["phantoms"] if config.quick else base["phantoms"])
    return dict(phantoms=phantoms, phantom_size=base["phantom_size"], **stages)


def phantom_sets(config: AblationConfig, work: Path, plan: dict) -> dict[str, Path]:
    """The phantom set (and, for the shortcut experiment, its re-renderings per test condition)."""
    shortcut = config.shortcut_spec
    modes = CONDITIONS if shortcut else ("clean",)
    roots = {}
    for mode in modes:
        root = work / "phantoms" / mode
        if not (root / "HAM10000_metadata.csv").is_file():
            # reversed at full strength: ink on every other-class phantom and on no target phantom
            planted = dataclasses.replace(shortcut, mode=mode, strength=1.0 if mode == "reversed" else shortcut.strength) \
                if shortcut else None
            generate_dataset(root, plan["phantoms"], seed=config.data_seed, size=plan["phantom_size"],
                             difficulty=config.difficulty, shortcut=planted, workers=config.workers,
                             overwrite=True, progress=config.progress)  # fmt: skip
        roots[mode] = root
    return roots


def share_masks(work: Path, run: Path) -> None:
    """Hard-link another run's cached lesion masks into ``run`` (all runs share one segmenter, so the same masks):
    each run then predicts only what is missing. The classifier checks the cache's segmenter digest itself."""
    cached = sorted(work.glob(f"*/seed*/{MASK_DIR}/{DIGEST}"))
    if cached and not (run / MASK_DIR).exists():
        shutil.copytree(cached[0].parent, run / MASK_DIR, copy_function=os.link)


def test_split(manifest: pd.DataFrame, root: Path) -> pd.DataFrame:
    """The test split, its images taken from ``root`` (the same phantoms, another rendering; the masks are the same)."""
    test = manifest[manifest["split"] == "test"]
    return test.assign(image_path=[str(root / IMAGES_DIR / Path(p).name) for p in test["image_path"]])


def score(pipeline: DermFusePipeline, test: pd.DataFrame, progress: bool) -> dict:
    """Test metrics and mean lesion focus per stream: ``dermfuse evaluate``'s path, with Grad-CAM."""
    metrics, _ = evaluate(pipeline, test, progress=progress, explain=True)
    return {**metrics["classification"], "lesion_focus": metrics["lesion_focus"], "no_lesion_found": metrics["no_lesion_found"]}


def stat(values: list) -> dict | None:
    """Mean, standard deviation (n − 1) and count of the values that are not ``None``."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "n": len(values)}


def summarise(runs: list[dict], variants: list[str], conditions: tuple[str, ...], classes: list[str]) -> dict:
    """Mean ± std over seeds of each variant's metrics, per test condition."""
    summary = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        summary[variant] = {}
        for condition in conditions:
            tests = [r["test"][condition] for r in mine]
            streams = sorted({s for t in tests for s in t["lesion_focus"]})
            summary[variant][condition] = {
                "balanced_accuracy": stat([t["balanced_accuracy"] for t in tests]),
                "macro_auc": stat([t["macro_auc"] for t in tests]),
                "ece": stat([t["ece"] for t in tests]),
                "recall": {c: stat([t["per_class"][c]["recall"] for t in tests]) for c in classes},
                "lesion_focus": {s: stat([t["lesion_focus"].get(s) for t in tests]) for s in streams},
            }
    return summary


def run_ablation(config: AblationConfig) -> Path:
    """Train and score every variant × seed; write the summary JSON and figures; return the JSON's path."""
    started = time.monotonic()
    work = Path(config.out or f"runs/{config.experiment}")
    report = Path(config.report or work)
    if config.fresh and work.exists():
        shutil.rmtree(work)
    plan = recipe(config)
    roots = phantom_sets(config, work, plan)
    common = dict(workers=config.workers, progress=config.progress, precision="auto")

    segmenter_run = work / "segmenter"
    state = stage_state(segmenter_run)
    if state != "done":
        run_segmenter(make_config(SegmenterConfig, config.preset, out=str(segmenter_run), resume=state == "resume",
                                  data=str(roots["present" if config.shortcut else "clean"]), seed=config.data_seed,
                                  pretrained=config.imagenet and config.preset == "paper", **plan["segmenter"], **common))  # fmt: skip
    manifest = read_manifest(segmenter_run / MANIFEST)
    conditions = CONDITIONS if config.shortcut else ("clean",)

    runs, reused = [], 0
    for variant in config.variant_list:
        for seed in config.seed_list:
            run = work / variant / f"seed{seed}"
            state = stage_state(run)
            reused += state == "done"
            if state != "done":
                share_masks(work, run)
                run_classifier(make_config(ClassifierConfig, config.preset, out=str(run), resume=state == "resume",
                                           segmenter=str(segmenter_run), variant=variant, seed=seed, ood_images=0,
                                           pretrained=config.imagenet and config.preset == "paper",
                                           name=f"dermfuse-{config.preset}-{config.experiment}-{variant}",
                                           **plan["classifier"], **common))  # fmt: skip
            scores = run / "test_scores.json"
            if not scores.is_file():
                pipeline = DermFusePipeline.from_pretrained(str(model_folder(run / MODEL_DIR)), device=DEVICE)
                tests = {}
                for condition in conditions:
                    tests[condition] = score(pipeline, test_split(manifest, roots[condition]), config.progress)
                write_json(scores, tests)
            trained = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
            runs.append({"variant": variant, "seed": seed, "run": str(run), "best_epoch": trained["best_epoch"],
                         "steps": trained["steps"], "test": json.loads(scores.read_text(encoding="utf-8"))})  # fmt: skip
            print(f"{variant} seed {seed}: " + ", ".join(
                f"{c} balanced accuracy {runs[-1]['test'][c]['balanced_accuracy']:.3f}" for c in conditions))

    classes = sorted(manifest["label"].dropna().unique())
    summary = summarise(runs, config.variant_list, conditions, classes)
    report.mkdir(parents=True, exist_ok=True)
    bars = {v: {c: summary[v][c]["balanced_accuracy"] for c in conditions} for v in config.variant_list}
    figures = [grouped_bars({v: {c: b[c]["mean"] for c in b} for v, b in bars.items()},
                            {v: {c: b[c]["std"] for c in b} for v, b in bars.items()},
                            report / f"{config.experiment}_bars.png", "balanced accuracy (test)", chance=1 / len(classes),
                            title=f"{config.experiment}: mean ± std over {len(config.seed_list)} seed(s)")]  # fmt: skip
    if config.shortcut and all(v in config.variant_list for v in GALLERY_VARIANTS):
        figures.append(cam_gallery(work, manifest, roots, config, report / "shortcut_cam_gallery.png"))
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "report", "progress", "workers", "fresh")}
    payload = {
        "experiment": config.experiment,
        "settings": settings,
        "recipe": plan,
        "data": json.loads((roots[conditions[0]] / "phantom_config.json").read_text(encoding="utf-8")),
        "splits": {s: int((manifest["split"] == s).sum()) for s in ("train", "val", "test")},
        "segmenter": json.loads((segmenter_run / "metrics.json").read_text(encoding="utf-8")).get("test"),
        "conditions": list(conditions),
        "classes": classes,
        "variants": {v: VARIANTS[v] for v in config.variant_list},
        "summary": summary,
        "runs": runs,
        "figures": [str(f.relative_to(report)) for f in figures if f is not None],
        "command": "python -m train ablation " + " ".join(f"--{k}={v}" for k, v in settings.items()
                                                          if v != getattr(AblationConfig, k)),  # fmt: skip
        "wall_minutes": round((time.monotonic() - started) / 60, 1),
        "runs_reused": reused,  # finished runs kept from an earlier call (not in wall_minutes)
    }
    path = report / f"{config.experiment}.json"
    write_json(path, payload)
    print(f"wrote {path} ({payload['wall_minutes']} minutes)")
    return path


def cam_gallery(work: Path, manifest: pd.DataFrame, roots: dict[str, Path], config: AblationConfig, path: Path) -> Path:
    """Baseline vs. full model (first seed) under the shortcut: the same test phantoms rendered with the
    training bias and reversed, each model's image-stream Grad-CAM over them, with P(true class) and
    the lesion focus. The first test images of the target class and of the other classes."""
    target = config.shortcut_spec.target
    test = manifest[manifest["split"] == "test"]
    chosen = pd.concat([test[test["label"] == target].head(GALLERY_IMAGES), test[test["label"] != target].head(GALLERY_IMAGES)])
    pipelines = {v: DermFusePipeline.from_pretrained(str(model_folder(work / v / f"seed{config.seed_list[0]}" / MODEL_DIR)), device=DEVICE)
                 for v in GALLERY_VARIANTS}  # fmt: skip
    rows = []
    for row in chosen.itertuples():
        panels = []
        for condition in ("present", "reversed"):
            case = next(test_split(manifest[manifest["image_id"] == row.image_id], roots[condition]).itertuples())
            image = np.asarray(load_image(case.image_path))
            panels.append((image, f"{row.label}, ink {condition}"))
            for variant, pipeline in pipelines.items():
                result = pipeline(case.image_path, case.age, case.sex, case.site, explain=True)
                p_true = result.probabilities[result.classes.index(row.label)]
                focus = (result.lesion_focus or {}).get("image")
                panels.append((heat_overlay(image, result.heatmaps["image"], mask=result.mask),
                               f"{variant}: P({row.label}) {p_true:.2f}\nfocus {'–' if focus is None else f'{focus:.2f}'}"))  # fmt: skip
        rows.append(panels)
    return image_grid(rows, path, suptitle=f"Image-stream Grad-CAM, {' vs. '.join(GALLERY_VARIANTS)} (seed "
                                           f"{config.seed_list[0]}), trained with shortcut {config.shortcut}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    run_ablation(parse_settings(AblationConfig, sys.argv[1:] if argv is None else argv))
    return 0
