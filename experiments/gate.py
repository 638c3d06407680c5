"""The assessability gate on real images: fit it for a model, store it in the model's config, measure it.

    python -m train gate                                   # the default model, data in ../shared/data
    python -m train gate --model=checkpoints/NAME --fit=false   # measure the stored gate only

Real dermoscopy comes from the model's own split (its ``splits.csv``): the *train* split fits the
dermoscopy score, the *val* split sets its threshold (``--rejection`` of it falls below), and the
*test* splits of HAM10000 and ISIC 2018 Task 1, the 140 PH2 images and the 40 CC0 originals measure it. The CC0
originals are ISIC archive images, and most are also ISIC 2018 Task 1 images of the model's split: ``overlap`` counts
them, and the report names them. Non-dermoscopy images (``experiments/non_dermoscopy.py``) are
cross-fitted: five folds grouped by the picture they come from; every negative is scored by a gate
fitted without its fold, so each number below is on images the gate was not fitted on. The stored
gate is then fitted on all negatives.

An image counts as turned away when its score is under the threshold or a rule fires: every rule the pipeline
applies for the model, its least side (``min_image_side``), least sharpness (``min_sharpness``) and least lesion
contrast (``min_lesion_contrast``) included.

Writes ``gate`` into ``<model>/config.json`` and ``docs/results/gate.json``; prints the per-source
table (rejection rate of each real dermoscopy source with the reasons; AUROC and rejection rate of
each non-dermoscopy source).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from dermfuse.assess import FEATURES, dermoscopy_features, dermoscopy_score, fit_gate, rule_numbers, rule_reasons, thumbnails
from dermfuse.data import read_dataset, read_manifest
from dermfuse.models.dermfuse import WEIGHTS_FILE, file_digest
from dermfuse.pipeline import Case, DermFusePipeline
from dermfuse.sources import DEFAULT_MODEL
from experiments.non_dermoscopy import non_dermoscopy_set
from train.config import parse_settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "gate.json"


@dataclass
class GateConfig:
    """Settings of ``python -m train gate``."""

    stage = "gate"
    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv and an OOD gate
    data: str = str(SHARED)  # the shared data folder (HAM10000/, ISIC2018_Task1/, real/, isic_cc0/)
    fit: bool = True  # fit the gate and store it in the model's config (false: measure the stored one)
    rejection: float = 0.005  # share of validation dermoscopy the threshold rejects
    components: int = 8  # principal components of the image encoder's pooled features among the inputs (0: none)
    train_images: int = 1000  # training-split dermoscopy images the score is fitted on
    seed: int = 0
    out: str = str(RESULTS)
    cache: str = "runs/gate"  # the pipeline's thumbnails of every image, per model weights and framing (refits reuse them)

    def __post_init__(self):
        if not 0 < self.rejection < 0.2:
            raise ValueError(f"--rejection={self.rejection}: a small share, e.g. 0.01")
        if not (Path(self.model) / "splits.csv").is_file():
            raise FileNotFoundError(f"--model={self.model}: no splits.csv there; the gate needs the model's own split")


def dermoscopy_sets(config: GateConfig) -> dict[str, pd.DataFrame]:
    """Real dermoscopy rows (image_path, ...) by use: train / val (fitting) and each measured source."""
    data = Path(config.data)
    split = read_manifest(Path(config.model) / "splits.csv", paths=False)[["image_id", "source", "split"]]
    tables = []
    for source, folder in (("ham10000", "HAM10000"), ("isic2018_task1", "ISIC2018_Task1")):
        if (data / folder).is_dir():
            table = read_dataset(data / folder)[["image_id", "image_path"]]
            tables.append(table.merge(split[split["source"] == source], on="image_id"))
    if not tables:
        raise FileNotFoundError(f"--data={data}: neither HAM10000/ nor ISIC2018_Task1/ is there")
    rows = pd.concat(tables, ignore_index=True)
    train = rows[rows["split"] == "train"].sample(n=min(config.train_images, (rows["split"] == "train").sum()),
                                                   random_state=config.seed)  # fmt: skip
    sets = {"train": train, "val": rows[rows["split"] == "val"]}
    for source in ("ham10000", "isic2018_task1"):
        sets[f"{source}_test"] = rows[(rows["split"] == "test") & (rows["source"] == source)]
    for name, folder in (("ph2", "real"), ("isic_cc0", "isic_cc0")):
        if (data / folder).is_dir():
            sets[name] = read_dataset(data / folder)[["image_id", "image_path"]]
    return {name: table.reset_index(drop=True) for name, table in sets.items() if len(table)}


KEPT = ("small", "prob", "lesion", "size", "deep", "pooled")  # per image, in the cache


def overlap(config: GateConfig, sets: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """For the sources from outside the model's split (PH2, the CC0 originals), how many of their images are in it
    all the same: in its train or val split (the segmenter learned from them, or picked its epoch on them), among the
    images the gate's score was fitted on, and among those its threshold was set on. Sources with none are left out."""
    split = read_manifest(Path(config.model) / "splits.csv", paths=False)
    fitted = {"model_train": set(split.loc[split["split"] == "train", "image_id"]),
              "model_val": set(split.loc[split["split"] == "val", "image_id"]),
              "gate_score": set(sets["train"]["image_id"]), "gate_threshold": set(sets["val"]["image_id"])}
    counts = {name: {use: len(set(sets[name]["image_id"]) & ids) for use, ids in fitted.items()}
              for name in ("ph2", "isic_cc0") if name in sets}
    return {name: row for name, row in counts.items() if any(row.values())}


def thumbnails_of(pipeline: DermFusePipeline, images: list, batch: int = 16) -> dict[str, np.ndarray]:
    """Run the pipeline on ``images``; keep what the gate and the rules look at: the thumbnails, the frame's
    (width, height), the deep OOD distance and the image encoder's pooled features (``ood_inputs``: one more pass of
    the image encoder)."""
    kept = {key: [] for key in KEPT}
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        for result in pipeline.predict([Case(image) for image in chunk], describe=False):
            for key, value in zip(("small", "prob", "lesion"), thumbnails(result.image, result.mask_probability, result.mask)):
                kept[key].append(value)
            kept["size"].append(result.mask.shape[::-1])  # (width, height)
            kept["deep"].append(float(np.expm1(result.assessment_numbers["deep_distance"])))
        kept["pooled"] += list(pipeline.ood_inputs(chunk)[0])
    return {key: np.array(values) for key, values in kept.items()}


def collect(pipeline: DermFusePipeline, config: GateConfig) -> tuple[dict, pd.DataFrame]:
    """Thumbnails of every real and non-dermoscopy image (cached in ``--cache`` for this model's weights, framing and
    dark frame: the pooled features are the image stream's)."""
    digest = file_digest(Path(config.model) / WEIGHTS_FILE).split(":")[1]
    filled = "-frame-filled" if pipeline.model.dark_frame == "filled" else ""  # a cache made before the option: "kept"
    cache = Path(config.cache) / f"{digest}-{pipeline.model.image_framing}{filled}.npz"
    negatives = non_dermoscopy_set(config.seed)
    other = pd.DataFrame({"source": [s for s, _, _ in negatives], "group": [g for _, g, _ in negatives]})
    stored = np.load(cache) if cache.is_file() else None
    names = list(dict.fromkeys(k.split("/")[0] for k in stored.files)) if stored is not None else []  # in saved order
    if names and all(f"{name}/{key}" in stored.files for name in names for key in KEPT):  # else made before "size": again
        return {name: {key: stored[f"{name}/{key}"] for key in KEPT} for name in names}, other
    sets = dermoscopy_sets(config)
    print({name: len(table) for name, table in sets.items()}, "+", len(negatives), "non-dermoscopy images")
    kept = {name: thumbnails_of(pipeline, table["image_path"].tolist()) for name, table in sets.items()}
    kept["not_dermoscopy"] = thumbnails_of(pipeline, [image for _, _, image in negatives])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **{f"{name}/{key}": value for name, part in kept.items() for key, value in part.items()})
    return kept, other


def features_of(part: dict) -> np.ndarray:
    return np.array([dermoscopy_features(*args) for args in zip(part["small"], part["prob"], part["lesion"], part["deep"])])


def rules_of(part: dict, model) -> list[list[str]]:
    """Each image's rule reasons, as the pipeline gives them for ``model`` (its least side, sharpness and lesion contrast
    included)."""
    return [rule_reasons(rule_numbers(small, lesion, int(width), int(height)), model.min_image_side, model.min_sharpness,
                         model.min_lesion_contrast)
            for small, lesion, (width, height) in zip(part["small"], part["lesion"], part["size"])]


def _rule_names(reasons: list[list[str]]) -> dict[str, int]:
    """How often each rule fired (its reason up to the first number or colon)."""
    return dict(Counter(re.split(r"[:(0-9]", reason)[0].strip() for r in reasons for reason in r))


def run_gate(config: GateConfig) -> dict:
    started = time.monotonic()
    pipeline = DermFusePipeline.from_pretrained(config.model)
    if pipeline.model.ood is None:
        raise ValueError(f"{config.model} has no OOD statistics (config 'ood'): the gate's features need them")
    stored_gate, pipeline.model.gate = pipeline.model.gate, None  # the features do not depend on it; it is refitted
    kept, other = collect(pipeline, config)
    positive, validation = features_of(kept["train"]), features_of(kept["val"])
    negative, negative_rules = features_of(kept["not_dermoscopy"]), rules_of(kept["not_dermoscopy"], pipeline.model)
    pooled = {name: part["pooled"] for name, part in kept.items()}
    kinds, groups = other["source"].to_numpy(), other["group"].to_numpy()

    def fit(rows):
        return fit_gate(positive, negative[rows], validation, config.rejection,
                        (pooled["train"], pooled["not_dermoscopy"][rows], pooled["val"]), config.components)

    margin = np.zeros(len(negative))  # each negative's score minus its fold's threshold, from a gate not fitted on it
    for fit_rows, held_out in GroupKFold(n_splits=5).split(negative, groups=groups):
        gate = fit(fit_rows)
        margin[held_out] = dermoscopy_score(gate, negative[held_out], pooled["not_dermoscopy"][held_out]) - gate["threshold"]
    if config.fit:
        gate = fit(np.arange(len(negative)))
        model_config = Path(config.model) / "config.json"
        stored = json.loads(model_config.read_text(encoding="utf-8"))
        stored["gate"] = gate
        model_config.write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")
    else:
        gate = stored_gate
        if gate is None:
            raise ValueError(f"{config.model} has no fitted gate: run without --fit=false")

    measured, real_margins, shared = {}, [], overlap(config, dermoscopy_sets(config))
    for name in [n for n in kept if n not in ("train", "val", "not_dermoscopy")] + ["val"]:
        scores = dermoscopy_score(gate, features_of(kept[name]), pooled[name]) - gate["threshold"]
        rules = rules_of(kept[name], pipeline.model)
        rejected = (scores < 0) | np.array([bool(r) for r in rules])
        if name != "val":
            real_margins.append(scores)
        measured[name] = {"images": len(scores), "rejected": float(rejected.mean()), "rejected_by_score": float((scores < 0).mean()),
                          "rules": _rule_names(rules), **({"in_model_split": shared[name]} if name in shared else {})}  # fmt: skip
    real_margins = np.concatenate(real_margins)
    for source in sorted(set(kinds)):
        here = kinds == source
        rules = [r for r, h in zip(negative_rules, here) if h]
        rejected = (margin[here] < 0) | np.array([bool(r) for r in rules])
        labels = np.r_[np.ones(len(real_margins)), np.zeros(here.sum())]
        measured[f"not_dermoscopy:{source}"] = {
            "images": int(here.sum()), "pictures": len(set(groups[here])), "rejected": float(rejected.mean()),
            "rejected_by_score": float((margin[here] < 0).mean()),
            "auroc": float(roc_auc_score(labels, np.r_[real_margins, margin[here]])), "rules": _rule_names(rules),
        }
    all_labels = np.r_[np.ones(len(real_margins)), np.zeros(len(margin))]
    summary = {
        "model": config.model, "rejection_target_on_val": config.rejection,
        "auroc_all_negatives": float(roc_auc_score(all_labels, np.r_[real_margins, margin])),
        "features": list(FEATURES) + [f"deep_pc{i + 1}" for i in range(len(gate.get("deep_basis") or []))],
        "components": config.components,
        "sources": measured, "minutes": (time.monotonic() - started) / 60,
        "command": "python -m train gate" + ("" if config.fit else " --fit=false"),
    }
    Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    Path(config.out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(gate_table(summary))
    return summary


def gate_table(summary: dict) -> str:
    """The per-source table (markdown)."""
    lines = ["| source | images | rejected (by the score) | AUROC vs real dermoscopy | rules that fired |", "|---|---|---|---|---|"]
    for name, row in summary["sources"].items():
        rules = ", ".join(f"{k} ({v})" for k, v in row["rules"].items()) or "none"
        auroc = f"{row['auroc']:.3f}" if "auroc" in row else "—"
        lines.append(f"| {name} | {row['images']} | {100 * row['rejected']:.1f} % ({100 * row['rejected_by_score']:.1f} %) | {auroc} | {rules} |")
    lines.append(f"\nAUROC, all real dermoscopy test images against all non-dermoscopy images: {summary['auroc_all_negatives']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run_gate(parse_settings(GateConfig, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
