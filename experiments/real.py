"""Real dermoscopy (PH2): a cross-validated segmenter and melanoma-vs-nevus classifier, then the checkpoint.

    python -m train real                    # ../shared/data/real → checkpoints/dermfuse-tiny-ph2-melanoma/

The 140 PH2 images (expert masks; 112 nevi, 28 melanomas; no patient metadata) are the only real
dermoscopy this project has, so every number here is cross-validated: 5 folds, stratified by label,
grouped by lesion (``dermfuse.data.kfold``). Everything starts from the phantom demo model
(``--base``, which has seen no real image), so no fold's test images leak into its own training.

1. **Segmenter recipes, cross-validated.** For each fold, the base segmenter is fine-tuned on the
   fold's training images by each recipe in ``--recipes``: ``finetune`` (real images only) and
   ``joint`` (real images plus ``--joint_phantoms`` fresh phantoms, so the phantoms are not
   forgotten). Each fold's test images are then segmented through ``DermFusePipeline`` (masks at
   the image's own resolution, post-processed as in the app) and scored per image: Dice, IoU and
   ISIC thresholded Jaccard, mean and worst decile. The base model (phantoms only) is scored on the
   same folds: the phantom-to-real gap as a number. The recipe with the higher mean Dice wins.
2. **Classifier, cross-validated.** For each fold, stage 2 (``train.classifier``) trains the
   two-class classifier (``mel``, ``nv``; metadata unknown) from the base model's phantom-trained
   weights on lesion images cut by the winning recipe's fold segmenter, for a fixed schedule.
   Out-of-fold probabilities give AUC, balanced accuracy, sensitivity at 80 % specificity and ECE;
   the temperature is cross-fitted (fold k's from the other folds' out-of-fold logits), so the
   calibrated ECE is honest. Each fold's OOD gate (fitted on its training images) is checked on its
   test images (share flagged) and on generated non-dermoscopy images (AUROC).
3. **The checkpoint.** The winning recipe's segmenter and the classifier are trained once more on
   all 140 images with the same schedules; the temperature is the one fitted on all out-of-fold
   logits. Exported with a model card that carries the cross-validated numbers.

Everything lands in ``--work`` (``cv.json``, per-image ``segmentation_cv.csv``, ``classification_cv.csv``,
the run folders), and a finished step is reused when the command runs again.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from dermfuse import DermFuse
from dermfuse.data import kfold, load_image_and_mask, read_dataset, write_manifest
from dermfuse.data.phantom import generate_dataset
from dermfuse.figures import segmentation_cases
from dermfuse.metrics import classification_metrics, expected_calibration_error, fit_temperature, mask_counts, segmentation_scores, softmax
from dermfuse.ood import non_dermoscopy_images
from dermfuse.pipeline import Case, DermFusePipeline
from dermfuse.predict import predict_all
from train.checkpoint import MODEL_DIR, model_folder, save_model, write_json
from train.classifier import run_classifier
from train.config import ClassifierConfig, SegmenterConfig, make_config, parse_settings
from experiments.demo import stage_state
from publish.push import export
from train.segmenter import run_segmenter

NAME = "dermfuse-tiny-ph2-melanoma"
CLASSES = ("mel", "nv")
RECIPES = ("finetune", "joint")
CASES_FIGURE = "real_cases.png"
SPECIFICITY = 0.80  # report the sensitivity at the threshold that keeps this specificity
# The schedules, on top of the tiny preset's recipes (train/config.py); fixed (no validation split
# inside a fold: 112 images are too few to spare some for early stopping).
SEGMENTER_RECIPE = dict(lr=1e-3, warmup_steps=10, checkpoint_every=50, patience=0)
CLASSIFIER_RECIPE = dict(lr=5e-4, warmup_steps=10, checkpoint_every=50, patience=0, balance="sampler")


@dataclass
class RealConfig:
    """Settings of ``python -m train real``."""

    stage = "real"
    data: str = "../shared/data/real"  # the real images: a folder (images/, masks/, labels.csv) or PH2 as distributed
    base: str = "checkpoints/dermfuse-tiny-phantom"  # the phantom-trained model every run starts from
    out: str = f"checkpoints/{NAME}"  # where the finished model goes
    work: str = "runs/real"  # folds, final runs, cross-validation results
    folds: int = 5
    seed: int = 0
    recipes: str = ",".join(RECIPES)  # segmenter recipes to compare
    joint_phantoms: int = 56  # phantoms beside the real training images in the `joint` recipe
    segmenter_epochs: int = 25
    classifier_epochs: int = 30
    batch_size: int = 16
    ood_negatives: int = 40  # generated non-dermoscopy images per fold for the gate's AUROC
    workers: int = 1
    progress: bool = False

    def __post_init__(self):
        unknown = sorted(set(self.recipe_list) - set(RECIPES))
        if unknown or not self.recipe_list:
            raise ValueError(f"--recipes={self.recipes}: expected some of {', '.join(RECIPES)}")
        if self.folds < 2:
            raise ValueError(f"--folds={self.folds}: cross-validation needs at least 2 folds")

    @property
    def recipe_list(self) -> list[str]:
        return [r.strip() for r in self.recipes.split(",") if r.strip()]


# --- data -------------------------------------------------------------------------------------


def read_real(config: RealConfig) -> pd.DataFrame:
    """The real images with masks and a ``mel``/``nv`` label (any layout ``read_dataset`` knows)."""
    root = Path(config.data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data={config.data}: no such folder. Point it at the PH2 images (a folder with images/, "
                                "masks/ and labels.csv, or PH2 as distributed with PH2_dataset.txt)")  # fmt: skip
    table = read_dataset(root)
    table = table[table["mask_path"].notna() & table["label"].isin(CLASSES)].reset_index(drop=True)
    if table["label"].nunique() < 2 or len(table) < 5 * config.folds:
        raise ValueError(f"{root}: {len(table)} images with masks and labels in {CLASSES}; need both labels and at least "
                         f"{5 * config.folds} images for {config.folds} folds")  # fmt: skip
    return table


def phantom_rows(config: RealConfig) -> pd.DataFrame:
    """Fresh phantoms (with masks) for the ``joint`` recipe, generated once into the work folder."""
    root = Path(config.work) / "phantoms"
    if not (root / "HAM10000_metadata.csv").is_file():
        generate_dataset(root, config.joint_phantoms, seed=config.seed + 1, size=192, workers=config.workers,
                         progress=config.progress)  # fmt: skip
    return read_dataset(root)


def write_fold_manifest(path: Path, table: pd.DataFrame, test: np.ndarray | None, extra: pd.DataFrame | None) -> Path:
    """``table`` with ``split`` = test at positions ``test``, train elsewhere (+ ``extra`` rows as train)."""
    split = np.full(len(table), "train", dtype=object)
    if test is not None:
        split[test] = "test"
    rows = table.assign(split=split)
    if extra is not None:
        rows = pd.concat([rows, extra.assign(split="train")], ignore_index=True)
    write_manifest(rows, path)
    return path


# --- training ---------------------------------------------------------------------------------


def train_segmenter(config: RealConfig, run: Path, manifest: Path) -> Path:
    state = stage_state(run)
    if state != "done":
        run_segmenter(make_config(SegmenterConfig, "tiny", out=str(run), manifest=str(manifest), init=config.base,
                                  resume=state == "resume", epochs=config.segmenter_epochs, batch_size=config.batch_size, seed=config.seed,
                                  workers=config.workers, progress=config.progress, **SEGMENTER_RECIPE))  # fmt: skip
    return run


def train_classifier(config: RealConfig, run: Path, segmenter_run: Path, temperature: float, temperature_from: str) -> Path:
    state = stage_state(run)
    if state != "done":
        run_classifier(make_config(ClassifierConfig, "tiny", out=str(run), segmenter=str(segmenter_run), name=NAME,
                                   classes=",".join(CLASSES), resume=state == "resume", epochs=config.classifier_epochs, batch_size=config.batch_size,
                                   temperature=temperature, temperature_from=temperature_from, seed=config.seed,
                                   workers=config.workers, progress=config.progress, **CLASSIFIER_RECIPE))  # fmt: skip
    return run


# --- scoring through the pipeline -------------------------------------------------------------


def diagnose(pipeline: DermFusePipeline, rows: pd.DataFrame) -> list:
    """Every row through ``DermFusePipeline`` (the app's path), no explanations."""
    cases = [Case(row.image_path, image_id=row.image_id) for row in rows.itertuples()]
    return predict_all(pipeline, cases, batch_size=8, progress=False)


def mask_scores(results: list, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-image Dice, IoU and thresholded Jaccard of the pipeline's masks against the expert masks."""
    counts = np.stack([mask_counts(result.mask, load_image_and_mask(row.image_path, row.mask_path)[1])[0]
                       for result, row in zip(results, rows.itertuples())])  # fmt: skip
    scores = segmentation_scores(counts)
    return pd.DataFrame({"image_id": rows["image_id"].to_numpy(), **{k: scores[k] for k in ("dice", "iou", "thresholded_jaccard")}})


def summarise_masks(scores: pd.DataFrame) -> dict:
    """Mean of each score, and the worst decile (mean Dice of the lowest-scoring 10 % of images)."""
    dice = np.sort(scores["dice"].to_numpy())
    worst = dice[: max(1, int(round(0.1 * len(dice))))]
    per_fold = scores.groupby("fold")["dice"].mean()
    return {"images": len(scores), "dice": float(dice.mean()), "dice_fold_std": float(per_fold.std(ddof=1)),
            "iou": float(scores["iou"].mean()), "thresholded_jaccard": float(scores["thresholded_jaccard"].mean()),
            "worst_decile_dice": float(worst.mean()), "dice_10th_percentile": float(np.percentile(dice, 10))}  # fmt: skip


def sensitivity_at_specificity(labels: np.ndarray, score: np.ndarray, specificity: float) -> tuple[float, float]:
    """(sensitivity, threshold) at the loosest threshold whose specificity is at least ``specificity``."""
    fpr, tpr, thresholds = roc_curve(labels, score)
    ok = np.flatnonzero(fpr <= 1 - specificity + 1e-12)
    best = ok[np.argmax(tpr[ok])]
    return float(tpr[best]), float(thresholds[best])


def summarise_classifier(oof: pd.DataFrame, bins: int = 10) -> dict:
    """Out-of-fold metrics: AUC (pooled and per fold), balanced accuracy, sensitivity at 80 % specificity, ECE."""
    classes = list(CLASSES)
    labels = oof["label"].map(classes.index).to_numpy()
    logits = oof[[f"logit_{c}" for c in classes]].to_numpy()
    # Cross-fitted temperature: fold k's from the other folds' out-of-fold logits.
    calibrated = np.zeros_like(logits)
    temperatures = {}
    for fold in sorted(oof["fold"].unique()):
        here = (oof["fold"] == fold).to_numpy()
        temperatures[int(fold)] = fit_temperature(logits[~here], labels[~here])
        calibrated[here] = softmax(logits[here], temperatures[int(fold)])
    metrics = classification_metrics(labels, calibrated, classes, bins)
    is_mel = (labels == classes.index("mel")).astype(int)
    p_mel = calibrated[:, classes.index("mel")]
    sensitivity, threshold = sensitivity_at_specificity(is_mel, p_mel, SPECIFICITY)
    per_fold = [roc_auc_score(is_mel[(oof["fold"] == f).to_numpy()], p_mel[(oof["fold"] == f).to_numpy()])
                for f in sorted(oof["fold"].unique())]  # fmt: skip
    return {
        "cases": len(oof), "melanomas": int(is_mel.sum()),
        "auc": float(roc_auc_score(is_mel, p_mel)), "auc_fold_mean": float(np.mean(per_fold)),
        "auc_fold_std": float(np.std(per_fold, ddof=1)),
        "balanced_accuracy": metrics["balanced_accuracy"], "accuracy": metrics["accuracy"],
        "sensitivity_at_80_specificity": sensitivity, "threshold_at_80_specificity": threshold,
        "recall": {c: metrics["per_class"][c]["recall"] for c in classes},
        "ece_before": expected_calibration_error(labels, softmax(logits), bins), "ece_after": metrics["ece"], "ece_bins": bins,
        "cross_fitted_temperatures": temperatures, "temperature_all_folds": fit_temperature(logits, labels),
        "confusion_matrix": metrics["confusion_matrix"],
    }  # fmt: skip


# --- the command ------------------------------------------------------------------------------


def run_real(config: RealConfig) -> Path:
    started = time.monotonic()
    work = Path(config.work)
    work.mkdir(parents=True, exist_ok=True)
    table = read_real(config)
    phantoms = phantom_rows(config) if "joint" in config.recipe_list else None
    folds = list(kfold(table, config.folds, seed=config.seed))
    print(f"{len(table)} real images ({table['label'].value_counts().to_dict()}), {config.folds} folds; base {config.base}")

    # 1. Segmenter recipes, cross-validated; the base (phantoms only) on the same folds.
    mask_rows, fold_segmenters = [], {recipe: [] for recipe in config.recipe_list}
    for k, (_, test) in enumerate(folds):
        rows = table.iloc[test]
        for recipe in ["phantom-only", *config.recipe_list]:
            if recipe == "phantom-only":
                model_dir = Path(config.base)
            else:
                fold = work / f"fold{k}"
                extra = phantoms if recipe == "joint" else None
                manifest = write_fold_manifest(fold / f"{recipe}.csv", table, test, extra)
                run = train_segmenter(config, fold / f"segmenter-{recipe}", manifest)
                fold_segmenters[recipe].append(run)
                model_dir = model_folder(run / MODEL_DIR)
            scores = mask_scores(diagnose(DermFusePipeline.from_pretrained(str(model_dir)), rows), rows).assign(fold=k, recipe=recipe)
            mask_rows.append(scores)
            print(f"fold {k} {recipe}: Dice {scores['dice'].mean():.4f}")
    mask_table = pd.concat(mask_rows, ignore_index=True)
    mask_table.to_csv(work / "segmentation_cv.csv", index=False)
    segmentation = {recipe: summarise_masks(part) for recipe, part in mask_table.groupby("recipe", sort=False)}
    best = max(config.recipe_list, key=lambda r: segmentation[r]["dice"])
    cases_figure(mask_table[mask_table["recipe"] == best], table, fold_segmenters[best], work / CASES_FIGURE)

    # 2. The classifier, cross-validated on the winning recipe's fold segmenters.
    oof_rows, ood = [], []
    for k, (_, test) in enumerate(folds):
        rows = table.iloc[test]
        run = train_classifier(config, work / f"fold{k}" / "classifier", fold_segmenters[best][k], 1.0,
                               "nothing (temperature 1 inside a cross-validation fold)")  # fmt: skip
        pipeline = DermFusePipeline.from_pretrained(str(model_folder(run / MODEL_DIR)))
        results = diagnose(pipeline, rows)
        logits = np.log(np.clip([r.probabilities for r in results], 1e-12, 1.0))  # T = 1: log-probabilities are logits
        oof_rows.append(pd.DataFrame({"fold": k, "image_id": rows["image_id"].to_numpy(), "label": rows["label"].to_numpy(),
                                      **{f"logit_{c}": logits[:, i] for i, c in enumerate(CLASSES)}}))  # fmt: skip
        ood.append(check_ood(pipeline, results, config, k))
        print(f"fold {k} classifier: AUC {roc_auc_score(rows['label'] == 'mel', logits[:, 0] - logits[:, 1]):.4f}")
    oof = pd.concat(oof_rows, ignore_index=True)
    oof.to_csv(work / "classification_cv.csv", index=False)
    classification = summarise_classifier(oof)
    flagged = float(np.mean([flag for fold in ood for flag in fold["flagged"]]))
    gate = {"real_flagged": flagged, "non_dermoscopy_auroc_min": float(min(f["auroc"] for f in ood)),
            "non_dermoscopy_auroc_mean": float(np.mean([f["auroc"] for f in ood])), "negatives_per_fold": config.ood_negatives}  # fmt: skip

    # 3. The checkpoint: both stages on all images, the temperature from all out-of-fold logits.
    final, final_started = work / "final", time.monotonic()
    extra = phantoms if best == "joint" else None
    segmenter_run = train_segmenter(config, final / "segmenter", write_fold_manifest(final / "all.csv", table, None, extra))
    temperature = classification["temperature_all_folds"]
    classifier_run = train_classifier(config, final / "classifier", segmenter_run, temperature,
                                      f"the {len(oof)} cross-validated out-of-fold predictions")  # fmt: skip
    describe_dataset(classifier_run, table)
    minutes, final_minutes = (time.monotonic() - started) / 60, (time.monotonic() - final_started) / 60
    cv = {
        "data": str(config.data), "images": len(table), "labels": table["label"].value_counts().to_dict(),
        "folds": config.folds, "seed": config.seed, "base": config.base, "settings": asdict(config),
        "segmentation": segmentation, "segmenter_recipe": best, "classification": classification, "ood": gate,
        "command": "python -m train real", "wall_time_minutes": round(minutes, 1),
        "final_model_minutes": round(final_minutes, 1),
    }  # fmt: skip
    write_json(work / "cv.json", cv)
    reproduce = {"command": "python -m train real",
                 "wall_time": f"{minutes:.1f} minutes in all, of which the final model (both stages) {final_minutes:.1f}",
                 "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"}  # fmt: skip
    out = export(classifier_run, config.out, reproduce=reproduce, results={"cross_validation": cv})
    shutil.copy2(work / CASES_FIGURE, out / CASES_FIGURE)
    print(f"real model in {out} ({minutes:.1f} minutes): CV Dice {segmentation[best]['dice']:.4f} ({best}), "
          f"AUC {classification['auc']:.4f}, balanced accuracy {classification['balanced_accuracy']:.4f}")
    return out


def cases_figure(scores: pd.DataFrame, table: pd.DataFrame, fold_runs: list[Path], path: Path, per_side: int = 3) -> Path:
    """The ``per_side`` best and worst out-of-fold masks of a recipe, each predicted by the fold model that never saw it."""
    ranked = scores.sort_values("dice", ascending=False)
    chosen = pd.concat([ranked.head(per_side), ranked.tail(per_side)])
    images, truths, predictions, titles = [], [], [], []
    for rank, score in enumerate(chosen.itertuples()):
        row = table[table["image_id"] == score.image_id].iloc[0]
        pipeline = DermFusePipeline.from_pretrained(str(model_folder(fold_runs[score.fold] / MODEL_DIR)))
        result = diagnose(pipeline, table[table["image_id"] == score.image_id])[0]
        image, truth = load_image_and_mask(row.image_path, row.mask_path)
        images.append(np.asarray(image)), truths.append(truth), predictions.append(result.mask)
        titles.append(f"{'best' if rank < per_side else 'worst'}: {score.image_id} ({row.label}), Dice {score.dice:.3f}")
    return segmentation_cases(images, truths, predictions, titles, path, columns=per_side,
                              suptitle="Real PH2 images: expert outline (green) and out-of-fold prediction (magenta, dashed)")


def check_ood(pipeline: DermFusePipeline, results: list, config: RealConfig, fold: int) -> dict:
    """A fold model's gate on its held-out real images (share flagged) and against non-dermoscopy images (AUROC)."""
    negatives = non_dermoscopy_images(config.ood_negatives, seed=fold)
    others = [r.ood_score for r in pipeline.predict([Case(image) for image in negatives])]
    real = [r.ood_score for r in results]
    return {"flagged": [score > r.ood_threshold for score, r in zip(real, results)],
            "auroc": roc_auc_score([0] * len(real) + [1] * len(others), real + others)}


def describe_dataset(classifier_run: Path, table: pd.DataFrame) -> None:
    """Name the training data in the model's config (its card and the app show it)."""
    folder = model_folder(classifier_run / MODEL_DIR)
    model = DermFuse.from_pretrained(str(folder))
    counts = table["label"].value_counts()
    model.update_config(dataset=f"PH2: {len(table)} real dermoscopy images ({counts.get('nv', 0)} nevi, {counts.get('mel', 0)} "
                                f"melanomas) with expert masks; no patient metadata")  # fmt: skip
    save_model(model, classifier_run / MODEL_DIR)


def main(argv: list[str] | None = None) -> int:
    run_real(parse_settings(RealConfig, sys.argv[1:] if argv is None else argv))
    return 0
