"""The paper's claims on real HAM10000 images: the ablation, lesion focus against expert masks, a real artefact shortcut.

    python -m train real-ablation                       # the full study → docs/results/real_ablation.json + figures
    python -m train real-ablation --limit=200 --seeds=0 --epochs=1 --report=runs/real-smoke   # a smoke run: not evidence

Everything is fixed but the variant and the seed: the shipped model's lesion-grouped split
(``checkpoints/dermfuse-small-ham10000/splits.csv``, HAM10000 rows), its segmenter's masks (predicted once,
through the pipeline, at each image's size; a mask cache of the same segmenter is hard-linked from
``--masks_from`` when there is one), the ``small`` preset's architecture, and one budget. The budget is what a
2-core CPU allows (``train/frozen.py``): the early stages of both ImageNet EfficientNet-Lite0 encoders stay
frozen and are run once per image into a cache; each variant × seed trains the later stages, the tokens, the
fusion, the metadata transformer and the head for ``--epochs`` epochs (weighted loss and metadata dropout as
the small recipe; best epoch by validation balanced accuracy; prior-shift calibration on validation).

Per run, on the test split: balanced accuracy, macro AUC, per-class recall, melanoma sensitivity at 80 %
specificity, ECE, with and without the metadata at test time; and on ``--focus_images`` test images (a fixed
random sample) the Grad-CAM of each stream as the app makes it (``dermfuse.explain.explain_streams``, with its
fallback) through the trained later stages, its share of mass inside the Tschandl expert mask.
Then the artefact shortcut (``experiments/real_artefacts.py``): ``--artefact`` pasted into ``--artefact_rate``
of the training melanomas; ``--artefact_variants`` trained on that, scored clean, biased, on every image and
reversed. A CAM gallery (baseline vs. full, the app's pipeline) shows some test images with and without it.

Finished runs are reused (each keeps ``metrics.json`` and ``test_scores.json``); ``--fresh`` deletes the runs
but keeps the feature caches, which are reused only under the same key (weights, settings, masks, images).

Cost, from CPU time measured on 1,000 training images at one thread (and extrapolated by image counts): frozen
stages ≈ 17 ms per clean image and 24 ms per artefact image (with its segmentation); one epoch of 7,008 training +
1,500 validation images ≈ 9 s (baseline) to 23 s (full) of CPU; in all ≈ 30 CPU-minutes for the defaults (15 + 6
runs of 4 epochs, scoring and figures), plus ≈ 7 if the masks must be predicted (no ``--masks_from`` cache). One
idle core runs it in about that wall time; a busy machine stretches it.
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

from dermfuse import DermFuse
from dermfuse.data import load_image, load_mask, read_ham10000, read_manifest
from dermfuse.data.artefacts import CITATION, KINDS, ArtefactInserter, templates_folder
from dermfuse.explain import explain_streams
from dermfuse.figures import grouped_bars
from dermfuse.lesion import paste_into_frame
from dermfuse.measure import lesion_focus
from dermfuse.metrics import classification_metrics, softmax
from dermfuse.models.presets import VARIANTS
from experiments import real_artefacts
from experiments.ablation import parse_seeds, stat
from experiments.demo import stage_state
from train.checkpoint import MODEL_DIR, model_folder, write_json
from train.classifier import MASK_DIR, cache_masks
from train.config import make_config, parse_settings
from train.frozen import (CachedCases, FeatureCache, FrozenConfig, cache_key, compute_features, frozen_model, late_maps,
                          predict_cached, run_frozen_classifier)
from train.runtime import replica_digest, setup_runtime

ROOT = Path(__file__).resolve().parents[1]
STREAMS = ("image", "lesion")
UNDER = 0.3  # lesion focus below this: the map lies mostly off the lesion
HISTOGRAM_BINS = 10
GALLERY_IMAGES = 2  # melanomas and other test images each
# The gallery shows HAM10000 images (CC BY-NC 4.0): it stays in the run folder, never in the repository (which holds
# only CC0 images), like the stickers' contact sheet.
GALLERY = "real_artefact_gallery.png"


@dataclass
class RealAblationConfig:
    """Settings of ``python -m train real-ablation``."""

    stage = "real-ablation"
    model: str = "checkpoints/dermfuse-small-ham10000"  # its split, segmenter (the masks) and architecture
    data: str = "../shared/data"  # holds HAM10000/ (images, metadata, Tschandl expert masks)
    artefacts: str = ""  # Katsch et al.'s artefact templates (default ../shared/data/artefacts or $DERMFUSE_ARTEFACTS)
    variants: str = ",".join(VARIANTS)
    seeds: str = "0,1,2"
    frozen_stages: int = 6  # EfficientNet-Lite0 stem + blocks[:6] frozen and cached; blocks[6], the head conv and the rest train
    epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    focus_images: int = 300  # test images whose Grad-CAM is measured against the expert masks
    artefact: str = "marking"  # bubble, marking or ruler
    artefact_rate: float = 0.5  # share of the training melanomas given the artefact (no other image gets one)
    artefact_variants: str = "baseline,full"  # trained on the biased set (empty: no artefact experiment)
    limit: int = 0  # smoke run: this many training images, half as many each for validation and test (0: all)
    masks_from: str = "runs/ham10000/classifier/masks"  # a mask cache of the same segmenter to reuse, if there
    out: str = "runs/real_ablation"
    report: str = "docs/results"  # where real_ablation.json and the figures go
    fresh: bool = False  # delete the runs first (the feature caches are kept)
    progress: bool = True

    def __post_init__(self):
        for name in ("variants", "artefact_variants"):
            chosen = [v.strip() for v in getattr(self, name).split(",") if v.strip()]
            if (not chosen and name == "variants") or any(v not in VARIANTS for v in chosen):
                raise ValueError(f"--{name}={getattr(self, name)}: expected names from {', '.join(VARIANTS)}")
        parse_seeds(self.seeds)
        if not 0 < self.artefact_rate <= 1:
            raise ValueError(f"--artefact_rate={self.artefact_rate}: a share of the training melanomas in (0, 1]")
        if self.artefact not in KINDS:
            raise ValueError(f"--artefact={self.artefact}: expected one of {', '.join(KINDS)}")
        if self.epochs < 1 or self.focus_images < 1 or self.limit < 0:
            raise ValueError("--epochs and --focus_images must be at least 1, --limit not negative")

    @property
    def variant_list(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]

    @property
    def artefact_variant_list(self) -> list[str]:
        return [v.strip() for v in self.artefact_variants.split(",") if v.strip()]

    @property
    def seed_list(self) -> list[int]:
        return parse_seeds(self.seeds)


# --- data ---------------------------------------------------------------------------------------


def study_table(config: RealAblationConfig) -> pd.DataFrame:
    """HAM10000 rows of the model's split with image paths and the expert masks (``expert_mask_path``)."""
    data = Path(config.data) / "HAM10000"
    if not (data / "HAM10000_segmentations_lesion_tschandl").is_dir():
        raise FileNotFoundError(f"HAM10000 images and Tschandl expert masks not found under {data}: pass --data")
    split = read_manifest(Path(config.model) / "splits.csv", paths=False)
    split = split[split["source"] == "ham10000"][["image_id", "split"]]
    table = read_ham10000(data).rename(columns={"mask_path": "expert_mask_path"}).merge(split, on="image_id")
    table = table.sort_values("image_id").reset_index(drop=True)
    if config.limit:
        rng = np.random.default_rng(0)
        wanted = {"train": config.limit, "val": max(config.limit // 2, 1), "test": max(config.limit // 2, 1)}
        parts = [rows.iloc[np.sort(rng.permutation(len(rows))[:wanted[name]])] for name, rows in table.groupby("split")]
        table = pd.concat(parts).sort_values("image_id").reset_index(drop=True)
    return table


def predicted_masks(source: DermFuse, table: pd.DataFrame, work: Path, config: RealAblationConfig) -> pd.DataFrame:
    """``table`` with ``mask_path``: the source segmenter's masks (``train.classifier.cache_masks``: the pipeline's
    path), hard-linked from ``--masks_from`` first when that cache was made by the same segmenter."""
    folder, shared = work / MASK_DIR, Path(config.masks_from)
    stamp = "segmenter.sha256"
    digest = replica_digest(source.segmenter)
    if config.masks_from and (shared / stamp).is_file() and (shared / stamp).read_text().strip() == digest:
        folder.mkdir(parents=True, exist_ok=True)
        for image_id in table["image_id"]:
            mine, theirs = folder / f"{image_id}.png", shared / f"{image_id}.png"
            if not mine.exists() and theirs.is_file():
                os.link(theirs, mine)
        if not (folder / stamp).is_file():
            shutil.copy(shared / stamp, folder / stamp)
    settings = make_config(FrozenConfig, "small", out=str(work), eval_batch_size=32, progress=config.progress)
    return cache_masks(source, table, folder, settings, setup_runtime(settings))


def clean_cases(table: pd.DataFrame):
    for row in table.itertuples():
        image = load_image(row.image_path)
        yield row.image_id, image, load_mask(row.mask_path, image.size)


# --- one run: train, then score -------------------------------------------------------------------


class Clock:
    """Wall and CPU seconds (all threads) of a ``with`` block: ``clock.spent`` = {"wall_s", "cpu_s"}."""

    def __enter__(self):
        self.wall, self.cpu = time.monotonic(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.spent = {"wall_s": round(time.monotonic() - self.wall, 1), "cpu_s": round(time.process_time() - self.cpu, 1)}


def train_run(config: RealAblationConfig, run: Path, variant: str, seed: int, source: DermFuse, table: pd.DataFrame,
              cache: FeatureCache, classes: list[str], name: str) -> dict | None:
    """Train (or resume) one variant × seed on ``cache`` unless finished; the time it took now (``None``: reused).

    A run folder records the settings it was made with (``study.json``); one made with others is refused, so a
    smoke run's models never stand in a full study's table."""
    state = stage_state(run)
    wanted = {"variant": variant, "seed": seed, "model": Path(config.model).name, "cache": cache.key,
              **{k: getattr(config, k) for k in ("epochs", "batch_size", "lr", "warmup_steps", "weight_decay",
                                                 "frozen_stages", "focus_images")}}  # fmt: skip
    recorded = run / "study.json"
    if state != "new" and recorded.is_file():
        made = json.loads(recorded.read_text(encoding="utf-8"))
        same = lambda key: json.dumps(wanted.get(key), sort_keys=True) == json.dumps(made.get(key), sort_keys=True)  # noqa: E731
        changed = sorted(key for key in wanted.keys() | made.keys() if not same(key))
        if changed:
            raise ValueError(f"{run} was made with other settings ({', '.join(changed)} differ): pass --fresh to train "
                             "the study again, or another --out")
    if state == "done":
        return None
    run.mkdir(parents=True, exist_ok=True)
    write_json(recorded, wanted)
    with Clock() as clock:
        settings = make_config(
            FrozenConfig, "small", out=str(run), resume=state == "resume", seed=seed, variant=variant, segmenter=config.model,
            epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, warmup_steps=config.warmup_steps,
            weight_decay=config.weight_decay, frozen_stages=config.frozen_stages, workers=0, mask_jitter=0.0, ood_images=0,
            checkpoint_every=10**6, progress=config.progress, name=f"dermfuse-small-{name}-{variant}-seed{seed}")
        run_frozen_classifier(settings, source, table, cache, classes)
    return clock.spent


def score(model: DermFuse, cache: FeatureCache, test: pd.DataFrame, focus_rows: pd.DataFrame, split: int) -> dict:
    """Test metrics with and without metadata, P(melanoma) per group, and Grad-CAM lesion focus on ``focus_rows``."""
    classes = list(model.classes)
    labels = np.array([classes.index(v) for v in test["label"]])
    out = {}
    for name, metadata in (("with_metadata", True), ("without_metadata", False)):
        logits = predict_cached(model.classifier, CachedCases(cache, test, classes, metadata=metadata), split)
        probabilities = softmax(model.calibrate(torch.from_numpy(logits)).numpy())
        metrics = classification_metrics(labels, probabilities, classes)
        target = classes.index(real_artefacts.TARGET)
        is_target = labels == target
        metrics["melanoma_score"] = {"melanomas": float(probabilities[is_target, target].mean()) if is_target.any() else None,
                                     "others": float(probabilities[~is_target, target].mean()) if (~is_target).any() else None}
        out[name] = metrics
    out["lesion_focus"] = focus_values(model, cache, focus_rows, split)
    return out


def focus_values(model: DermFuse, cache: FeatureCache, rows: pd.DataFrame, split: int, batch: int = 50) -> dict:
    """Per stream, each image's share of Grad-CAM mass inside its expert mask (``None`` where no map could be made),
    and what a uniform map would score (the lesion's share of what the stream saw)."""
    classifier = model.classifier.eval().requires_grad_(False)
    streams = list(classifier.encoders())
    values = {s: [] for s in streams}
    uniform = {s: [] for s in streams}
    for start in range(0, len(rows), batch):
        chunk = rows.iloc[start:start + batch]
        index = cache.rows(chunk["image_id"])
        with torch.no_grad():
            image_maps, lesion_maps = late_maps(classifier, cache.image[index].float(), cache.lesion[index].float(), split)
        items = CachedCases(cache, chunk, list(model.classes))
        metadata = tuple(items.metadata[k] for k in ("age", "sex", "site"))
        explained = explain_streams(classifier, image_maps, lesion_maps, metadata, model.image_size)
        for i, row in enumerate(chunk.itertuples()):
            expert = load_mask(row.expert_mask_path)
            box = cache.box(int(index[i]))
            for s in streams:
                where = box if s == "lesion" else None
                heat = paste_into_frame(explained.maps[s][i], where, expert.shape)
                values[s].append(lesion_focus(heat, expert) if explained.methods[s][i] else None)
                uniform[s].append(chance_focus(expert, where))
    return {s: {"values": values[s], "uniform": float(np.mean(uniform[s]))} for s in streams}


def chance_focus(expert: np.ndarray, box) -> float:
    """The focus of a map that is the same everywhere the stream looked."""
    if box is None:
        return float(expert.mean())
    x0, y0, x1, y1 = (max(v, 0) for v in box)
    return float(expert[y0:y1, x0:x1].mean())


def scored(run: Path, caches: dict[str, FeatureCache], test: pd.DataFrame, focus_rows: pd.DataFrame, split: int) -> dict:
    """The run's test scores per condition (``test_scores.json``, computed once)."""
    path = run / "test_scores.json"
    if not path.is_file():
        model = DermFuse.from_pretrained(str(model_folder(run / MODEL_DIR)))
        write_json(path, {condition: score(model, cache, test, focus_rows, split) for condition, cache in caches.items()})
    return json.loads(path.read_text(encoding="utf-8"))


# --- summaries ------------------------------------------------------------------------------------


def distribution(values: list) -> dict:
    """Mean, quartiles, share under ``UNDER`` and a histogram of per-image focus values (``None`` left out)."""
    values = np.array([v for v in values if v is not None], dtype=float)
    if not len(values):
        return {"images": 0}
    counts, _ = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return {"images": int(len(values)), "mean": float(values.mean()), "median": float(np.median(values)),
            "q25": float(np.quantile(values, 0.25)), "q75": float(np.quantile(values, 0.75)),
            f"share_under_{UNDER}": float((values < UNDER).mean()), "histogram": counts.tolist()}  # fmt: skip


def summarise(runs: list[dict], variants: list[str], conditions: list[str], classes: list[str]) -> dict:
    """Mean ± std over seeds per variant and condition; lesion focus also pooled over seeds (its distribution)."""
    summary = {}
    for variant in variants:
        mine = [r["test"] for r in runs if r["variant"] == variant]
        summary[variant] = {}
        for condition in conditions:
            tests = [t[condition] for t in mine]
            entry = {}
            for setting in ("with_metadata", "without_metadata"):
                m = [t[setting] for t in tests]
                entry[setting] = {
                    "balanced_accuracy": stat([x["balanced_accuracy"] for x in m]),
                    "macro_auc": stat([x["macro_auc"] for x in m]),
                    "ece": stat([x["ece"] for x in m]),
                    "melanoma_sensitivity_at_80_specificity": stat([x["per_class"]["mel"]["sensitivity_at_80_specificity"] for x in m]),
                    "recall": {c: stat([x["per_class"][c]["recall"] for x in m]) for c in classes},
                    "melanoma_score": {g: stat([x["melanoma_score"][g] for x in m]) for g in ("melanomas", "others")},
                }
            streams = list(tests[0]["lesion_focus"])
            entry["lesion_focus"] = {s: {"mean": stat([distribution(t["lesion_focus"][s]["values"]).get("mean") for t in tests]),
                                         "pooled": distribution([v for t in tests for v in t["lesion_focus"][s]["values"]]),
                                         "uniform_map": tests[0]["lesion_focus"][s]["uniform"]}
                                     for s in streams}  # fmt: skip
            summary[variant][condition] = entry
    return summary


def paired_metadata_gain(runs: list[dict], variant: str, condition: str = "clean") -> dict | None:
    """Per seed, the same model with minus without metadata at test time (balanced accuracy): mean, std, n."""
    gains = [r["test"][condition]["with_metadata"]["balanced_accuracy"] - r["test"][condition]["without_metadata"]["balanced_accuracy"]
             for r in runs if r["variant"] == variant]  # fmt: skip
    return stat(gains)


# --- the study ------------------------------------------------------------------------------------


def run_real_ablation(config: RealAblationConfig) -> Path:
    """Run (or finish) the whole study; write ``<report>/real_ablation.json`` and the figures; return the JSON's path."""
    started = time.monotonic()
    timing: dict = {}
    work, report = Path(config.out), Path(config.report)
    for folder in ("ablation", "artefact"):
        if config.fresh and (work / folder).exists():
            shutil.rmtree(work / folder)
    source = DermFuse.from_pretrained(config.model)
    classes = list(source.classes)
    split = config.frozen_stages
    table = study_table(config)
    test = table[table["split"] == "test"].reset_index(drop=True)
    focus_rows = test.iloc[np.sort(np.random.default_rng(0).permutation(len(test))[:config.focus_images])]

    with Clock() as clock:
        table = predicted_masks(source, table, work, config)
    timing["masks"] = {**clock.spent, "images": len(table)}
    reference = frozen_model(source, classes, "full", split, 0)  # the frozen stages (the same in every variant)
    key = cache_key(reference, split, masks=replica_digest(source.segmenter),
                    images=f"clean: {real_artefacts.ids_digest(table['image_id'])}")
    clean = FeatureCache.load(work / "features" / "clean.pt", key)
    if clean is None:
        with Clock() as clock:
            clean = compute_features(reference, split, clean_cases(table), len(table), key, progress=config.progress)
            clean.save(work / "features" / "clean.pt")
        timing["clean_features"] = {**clock.spent, "images": len(table)}

    runs, reused = [], 0
    for variant in config.variant_list:
        for seed in config.seed_list:
            run = work / "ablation" / variant / f"seed{seed}"
            trained = train_run(config, run, variant, seed, source, table, clean, classes, "real-ablation")
            reused += trained is None
            with Clock() as clock:
                test_scores = scored(run, {"clean": clean}, test, focus_rows, split)
            runs.append(run_record(run, variant, seed, trained, clock.spent, test_scores))
            print(f"real ablation {variant} seed {seed}: balanced accuracy "
                  f"{runs[-1]['test']['clean']['with_metadata']['balanced_accuracy']:.3f}", flush=True)

    artefacts, artefact_runs = None, []
    if config.artefact_variant_list:
        artefacts, artefact_runs = artefact_study(config, source, classes, table, test, focus_rows, clean, reference, work,
                                                  timing)  # fmt: skip
    reused += sum(r["train_time"] is None for r in artefact_runs)

    with Clock() as clock:
        figures = make_figures(config, runs, artefact_runs, classes, test, work, report, source)
    timing["figures"] = clock.spent
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "report", "progress", "fresh")}
    payload = {
        "experiment": "real_ablation",
        "settings": settings,
        "command": "python -m train real-ablation " + " ".join(
            f"--{k}={v}" for k, v in settings.items() if v != getattr(RealAblationConfig, k)),
        "smoke": bool(config.limit or config.epochs < RealAblationConfig.epochs or len(config.seed_list) < 2),
        "data": {"model": Path(config.model).name, "source": "HAM10000 rows of the model's splits.csv",
                 "splits": {s: int((table["split"] == s).sum()) for s in ("train", "val", "test")},
                 "masks": "the model's segmenter, through the pipeline (cache_masks)",
                 "expert_masks": "HAM10000_segmentations_lesion_tschandl (Tschandl et al.)",
                 "focus_images": int(len(focus_rows))},
        "classes": classes,
        "budget": budget(config, reference, runs + artefact_runs, timing),
        "variants": {v: VARIANTS[v] for v in config.variant_list},
        "summary": summarise(runs, config.variant_list, ["clean"], classes),
        "metadata_at_test_time": {v: paired_metadata_gain(runs, v) for v in config.variant_list
                                  if VARIANTS[v]["use_metadata"]},
        "runs": runs,
        "artefacts": artefacts,
        "figures": [str(f.relative_to(report)) for f in figures if f.is_relative_to(report)],
        "gallery": str(work / GALLERY) if (work / GALLERY).is_file() else None,  # HAM10000 images: not committed
        "wall_minutes": round((time.monotonic() - started) / 60, 1),
        "runs_reused": reused,
    }
    report.mkdir(parents=True, exist_ok=True)
    path = write_json(report / "real_ablation.json", payload)
    print(f"wrote {path} ({payload['wall_minutes']} minutes; {reused} finished runs reused)")
    return path


def run_record(run: Path, variant: str, seed: int, train_time: dict | None, score_time: dict, test: dict) -> dict:
    """One run's entry: its training (``train_time`` ``None`` when reused from an earlier call) and test scores."""
    trained = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    epoch_seconds = [row["seconds"] for row in trained["epochs"]]
    return {"variant": variant, "seed": seed, "run": str(run), "best_epoch": trained["best_epoch"], "steps": trained["steps"],
            "train_time": train_time, "score_time": score_time, "epoch_seconds": epoch_seconds, "test": test}  # fmt: skip


def artefact_study(config, source, classes, table, test, focus_rows, clean, reference, work, timing) -> tuple[dict, list]:
    """Train the artefact variants on the biased set and score them under every condition."""
    inserter = ArtefactInserter(config.artefact, config.artefacts or None)
    split = config.frozen_stages
    description = f"{config.artefact}, seed = image id"
    train_mel = table[(table["split"] == "train") & (table["label"] == real_artefacts.TARGET)]
    inked = train_mel[train_mel["image_id"].map(lambda i: real_artefacts.carries_artefact(i, config.artefact_rate))]
    with Clock() as clock:
        train_art = real_artefacts.artefact_cache(work / "features" / f"{config.artefact}_train.pt", inked, inserter, source,
                                                  reference, split, description, config.progress)
        test_art = real_artefacts.artefact_cache(work / "features" / f"{config.artefact}_test.pt", test, inserter, source,
                                                 reference, split, description, config.progress)
    timing["artefact_features"] = {**clock.spent, "images": int(len(inked) + len(test))}
    biased_train = FeatureCache.merge(clean, train_art)
    caches = real_artefacts.condition_caches(clean, test, test_art, config.artefact_rate)
    runs = []
    for variant in config.artefact_variant_list:
        for seed in config.seed_list:
            run = work / "artefact" / f"{config.artefact}{config.artefact_rate:g}" / variant / f"seed{seed}"
            trained = train_run(config, run, variant, seed, source, table, biased_train, classes, f"{config.artefact}-shortcut")
            with Clock() as clock:
                test_scores = scored(run, caches, test, focus_rows, split)
            runs.append(run_record(run, variant, seed, trained, clock.spent, test_scores))
            print(f"{config.artefact} shortcut {variant} seed {seed}: balanced accuracy " + ", ".join(
                f"{c} {runs[-1]['test'][c]['with_metadata']['balanced_accuracy']:.3f}" for c in caches), flush=True)
    is_mel = test["label"] == real_artefacts.TARGET
    return {
        "artefact": config.artefact,
        "templates": {"folder": str(templates_folder(config.artefacts or None)), "count": len(inserter.templates),
                      "citation": CITATION},
        "rate": config.artefact_rate,
        "train_melanomas": int(len(train_mel)),
        "train_with_artefact": int(len(inked)),
        "test": {"melanomas": int(is_mel.sum()), "others": int((~is_mel).sum()),
                 "biased_melanomas_with_artefact": int(test.loc[is_mel, "image_id"].map(
                     lambda i: real_artefacts.carries_artefact(i, config.artefact_rate)).sum())},
        "conditions": list(real_artefacts.CONDITIONS),
        "variants": {v: VARIANTS[v] for v in config.artefact_variant_list},
        "summary": summarise(runs, config.artefact_variant_list, list(real_artefacts.CONDITIONS), classes),
        "runs": runs,
    }, runs


def budget(config: RealAblationConfig, reference: DermFuse, runs: list[dict], timing: dict) -> dict:
    """What each run may train and what the study cost, measured."""
    trainable = {}
    for variant in config.variant_list:
        model = frozen_model(reference, list(reference.classes), variant, config.frozen_stages, 0)
        trainable[variant] = int(sum(p.numel() for p in model.classifier.parameters() if p.requires_grad))
    epochs = [s for r in runs for s in r["epoch_seconds"]]
    return {
        "frozen": f"stem + blocks[:{config.frozen_stages}] of each tf_efficientnet_lite0 (ImageNet, cached once per image, fp16)",
        "trained": f"blocks[{config.frozen_stages}:], conv_head, bn2, stream tokens, fusion, metadata transformer, head",
        "trainable_parameters": trainable,
        "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr, "augmentation": "horizontal flip of the cached maps",
        "timing": timing,
        "median_epoch_seconds": float(np.median(epochs)) if epochs else None,
        "runs_trained_now": sum(r["train_time"] is not None for r in runs),
        "training_and_scoring": {part: {key: round(sum(r[part][key] for r in runs if r[part]), 1) for key in ("wall_s", "cpu_s")}
                                 for part in ("train_time", "score_time")},
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def make_figures(config, runs, artefact_runs, classes, test, work, report, source) -> list[Path]:
    """Balanced accuracy per variant (with and without metadata at test time) into ``report``, and the artefact
    gallery into ``work``."""
    report.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs, config.variant_list, ["clean"], classes)
    means = {v: {s.replace("_", " "): summary[v]["clean"][s]["balanced_accuracy"]["mean"] for s in ("with_metadata", "without_metadata")}
             for v in config.variant_list}  # fmt: skip
    stds = {v: {s.replace("_", " "): summary[v]["clean"][s]["balanced_accuracy"]["std"] for s in ("with_metadata", "without_metadata")}
            for v in config.variant_list}  # fmt: skip
    figures = [grouped_bars(means, stds, report / "real_ablation_bars.png", "balanced accuracy (HAM10000 test)",
                            title=f"Real ablation: mean ± std over {len(config.seed_list)} seed(s)", chance=1 / len(classes))]
    shown = [v for v in ("baseline", "full") if v in config.artefact_variant_list]
    if shown:
        seed = config.seed_list[0]
        models = {v: DermFuse.from_pretrained(str(model_folder(
            work / "artefact" / f"{config.artefact}{config.artefact_rate:g}" / v / f"seed{seed}" / MODEL_DIR))) for v in shown}
        target = test["label"] == real_artefacts.TARGET
        rows = pd.concat([test[target].head(GALLERY_IMAGES), test[~target].head(GALLERY_IMAGES)])
        figures.append(real_artefacts.gallery(
            models, rows, ArtefactInserter(config.artefact, config.artefacts or None), work / GALLERY,
            f"Image-stream Grad-CAM, trained with {config.artefact} on {config.artefact_rate:.0%} of the training melanomas "
            f"(seed {seed}); white: expert mask. HAM10000 images (Tschandl et al. 2018), templates Katsch et al. 2022: CC BY-NC 4.0"))
    return figures


def main(argv: list[str] | None = None) -> int:
    run_real_ablation(parse_settings(RealAblationConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
