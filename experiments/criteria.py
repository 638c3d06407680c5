"""Are the ABCD criteria (``dermfuse/criteria.py``) stable and do they say anything? Two checks on real images.

    python -m experiments.criteria            # → docs/results/criteria.json and a table (≈ 2 min on 2 CPU cores)

1. **Predicted against expert masks (PH2, 140 images):** A, B and C computed from the shipped model's
   segmenter mask (through ``DermFusePipeline.segment``, the app's masks) and from the PH2 expert mask, on the
   same pixels. Per criterion: the share of images with the same score, Cohen's kappa with linear weights
   over the criterion's whole range, and the mean absolute difference. Only the segmenter runs: the
   classifier is not needed.
2. **By diagnosis (HAM10000):** A, B, C and the partial score from the *expert* (Tschandl) masks on the
   model's HAM10000 test split (``splits.csv``, read with ``read_manifest``), per class: mean and the
   distribution of scores. Melanoma against nevus with a one-sided Mann-Whitney U test ("melanomas score
   higher"), one image per lesion (the first by image id), so that several photographs of one lesion do not
   count as independent; the effect size is the probability that a random melanoma scores higher than a
   random nevus (ties count half: the AUC, U / (n_mel · n_nv)). The same test on PH2's expert masks. Per class
   also: how often each colour counts, and the median CIELAB a* (redness) of the skin around the lesion
   before the white balance (a camera's colour cast).

Expert masks for HAM10000 keep the segmenter out of the by-diagnosis comparison (its agreement is
measured in part 1). The numbers are what these definitions give, not a clinical validation: there are
no dermatologists' ABCD ratings of these images to compare with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu
from sklearn.metrics import cohen_kappa_score
from tqdm import tqdm

from dermfuse.criteria import COLOUR_REFERENCES, NOT_COMPUTED, PARTIAL_LABEL, SOURCE, lesion_criteria
from dermfuse.data import read_dataset
from dermfuse.data.io import load_image_and_mask
from dermfuse.data.splits import read_manifest
from dermfuse.pipeline import DermFusePipeline

ROOT = Path(__file__).resolve().parents[1]
CRITERIA = {"asymmetry": (0, 2), "border": (0, 8), "colours": (1, 6)}
COMPARED = ("mel", "nv")


def scores(image: np.ndarray, mask: np.ndarray) -> dict:
    """A, B, C, the partial score and the colours counted of one lesion (NaN and none without a lesion)."""
    result = lesion_criteria(image, mask)
    if result is None:
        return {**{k: np.nan for k in CRITERIA}, "partial": np.nan, "colour_names": [], "skin_a": np.nan}
    skin = result.colours.numbers["skin_lab"]
    return {**{k: getattr(result, k).score for k in CRITERIA}, "partial": result.partial_score,
            "colour_names": result.colours.numbers["colours"], "skin_a": np.nan if skin is None else skin[1]}


def ph2_table(pipeline: DermFusePipeline, data: Path, batch_size: int) -> pd.DataFrame:
    """One row per PH2 image: A, B, C from the expert mask and from the segmenter's, and the masks' Dice."""
    table = read_dataset(data / "real", masks=True)
    rows = []
    for start in tqdm(range(0, len(table), batch_size), desc="PH2", unit="batch"):
        batch = table.iloc[start:start + batch_size]
        loaded = [load_image_and_mask(r.image_path, r.mask_path) for r in batch.itertuples()]
        _, predicted, _ = pipeline.segment([image for image, _ in loaded])
        for record, (image, expert), mask in zip(batch.itertuples(), loaded, predicted):
            pixels = np.asarray(image)
            dice = 2 * (mask & expert).sum() / max(1, mask.sum() + expert.sum())
            rows.append({"image_id": record.image_id, "label": record.label, "dice": float(dice),
                         **{f"expert_{k}": v for k, v in scores(pixels, expert).items()},
                         **{f"predicted_{k}": v for k, v in scores(pixels, mask).items()}})
    return pd.DataFrame(rows)


def ham_table(model: Path, data: Path, limit: int | None) -> pd.DataFrame:
    """One row per HAM10000 test image of the model's split: A, B, C from the expert (Tschandl) mask."""
    manifest = read_manifest(model / "splits.csv", paths=False)
    test = manifest[(manifest["source"] == "ham10000") & (manifest["split"] == "test")].sort_values("image_id")
    test = test.head(limit) if limit else test
    folder = data / "HAM10000"
    rows = []
    for record in tqdm(test.itertuples(), total=len(test), desc="HAM10000 test", unit="image"):
        image, mask = load_image_and_mask(folder / "HAM10000_images" / f"{record.image_id}.jpg",
                                          folder / "HAM10000_segmentations_lesion_tschandl" / f"{record.image_id}_segmentation.png")
        rows.append({"image_id": record.image_id, "lesion_id": record.lesion_id, "label": record.label,
                     **scores(np.asarray(image), mask)})
    return pd.DataFrame(rows)


def agreement(table: pd.DataFrame) -> dict:
    """Per criterion: exact agreement, linearly weighted kappa and mean absolute difference, predicted vs expert."""
    both = table.dropna(subset=[f"{side}_{k}" for side in ("expert", "predicted") for k in CRITERIA])
    out = {"images": int(len(both)), "no_lesion_predicted": int(table["predicted_asymmetry"].isna().sum())}
    for name, (low, high) in CRITERIA.items():
        expert, predicted = both[f"expert_{name}"].astype(int), both[f"predicted_{name}"].astype(int)
        out[name] = {
            "exact_agreement": float((expert == predicted).mean()),
            "kappa_linear": float(cohen_kappa_score(expert, predicted, weights="linear", labels=list(range(low, high + 1)))),
            "mean_absolute_difference": float((expert - predicted).abs().mean()),
            "expert_mean": float(expert.mean()), "predicted_mean": float(predicted.mean()),
        }
    difference = (both["expert_partial"] - both["predicted_partial"]).abs()
    out["partial"] = {"mean_absolute_difference": float(difference.mean())}
    return out


def by_class(table: pd.DataFrame, prefix: str = "") -> dict:
    """Per diagnosis: images, mean of each criterion and the partial score, and each criterion's distribution."""
    out = {}
    for label, group in table.groupby("label"):
        row = {"images": int(len(group))}
        for name, (low, high) in CRITERIA.items():
            values = group[f"{prefix}{name}"].dropna().astype(int)
            row[name] = {"mean": float(values.mean()),
                         "distribution": {str(v): int((values == v).sum()) for v in range(low, high + 1)}}
        row["partial"] = {"mean": float(group[f"{prefix}partial"].mean())}
        row["colour_frequency"] = {c: float(group[f"{prefix}colour_names"].map(lambda names: c in names).mean())
                                   for c in COLOUR_REFERENCES}  # share of the images in which each colour counts
        row["median_skin_a"] = float(group[f"{prefix}skin_a"].median())  # the skin's redness before the white balance
        out[str(label)] = row
    return out


def melanoma_vs_nevus(table: pd.DataFrame, prefix: str = "") -> dict:
    """One-sided Mann-Whitney U (melanoma > nevus) per criterion and for the partial score, with the AUC."""
    mel, nv = (table[table["label"] == c] for c in COMPARED)
    out = {"melanomas": int(len(mel)), "nevi": int(len(nv))}
    for name in (*CRITERIA, "partial"):
        a, b = mel[f"{prefix}{name}"].dropna(), nv[f"{prefix}{name}"].dropna()
        test = mannwhitneyu(a, b, alternative="greater")
        auc = float(test.statistic / (len(a) * len(b)))
        out[name] = {"mel_mean": float(a.mean()), "nv_mean": float(b.mean()), "auc": auc, "p_value": float(test.pvalue),
                     "holds": bool(test.pvalue < 0.05 and auc > 0.5)}
    return out


def one_per_lesion(table: pd.DataFrame) -> pd.DataFrame:
    """The first image (by image id) of each lesion."""
    return table.sort_values("image_id").groupby("lesion_id", as_index=False).head(1)


def print_table(report: dict) -> None:
    ph2 = report["ph2"]["agreement"]
    print(f"\nPH2, predicted vs expert masks ({ph2['images']} images, mean Dice {report['ph2']['mean_dice']:.3f})")
    print(f"{'criterion':<10} {'exact':>7} {'kappa':>7} {'MAD':>6} {'expert':>7} {'predicted':>10}")
    for name in CRITERIA:
        row = ph2[name]
        print(f"{name:<10} {row['exact_agreement']:>7.1%} {row['kappa_linear']:>7.3f} {row['mean_absolute_difference']:>6.2f} "
              f"{row['expert_mean']:>7.2f} {row['predicted_mean']:>10.2f}")
    ham = report["ham10000"]
    print(f"\nHAM10000 test split, expert masks ({ham['images']} images): mean per class")
    print(f"{'class':<6} {'images':>6} " + " ".join(f"{k:>10}" for k in (*CRITERIA, "partial")))
    for label, row in ham["by_class"].items():
        print(f"{label:<6} {row['images']:>6} " + " ".join(f"{row[k]['mean']:>10.2f}" for k in (*CRITERIA, "partial")))
    print("\nShare of images in which each colour counts (HAM10000 test, expert masks)")
    print(f"{'class':<6} " + " ".join(f"{c:>11}" for c in COLOUR_REFERENCES))
    for label, row in ham["by_class"].items():
        print(f"{label:<6} " + " ".join(f"{row['colour_frequency'][c]:>11.1%}" for c in COLOUR_REFERENCES))
    for title, test in (("HAM10000, one image per lesion", ham["melanoma_vs_nevus"]),
                        ("PH2, expert masks", report["ph2"]["melanoma_vs_nevus"])):
        print(f"\nMelanoma > nevus? {title} ({test['melanomas']} mel, {test['nevi']} nv): one-sided Mann-Whitney")
        for name in (*CRITERIA, "partial"):
            row = test[name]
            print(f"{name:<10} mel {row['mel_mean']:.2f}  nv {row['nv_mean']:.2f}  AUC {row['auc']:.3f}  p {row['p_value']:.2g}  "
                  f"{'holds' if row['holds'] else 'does not hold'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "dermfuse-small-ham10000"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", default=str(ROOT / "docs" / "results" / "criteria.json"))
    parser.add_argument("--limit", type=int, help="only the first N HAM10000 test images (a quick check)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    data, model = Path(args.data), Path(args.model)
    if not (data / "real" / "labels.csv").is_file() or not (data / "HAM10000" / "HAM10000_segmentations_lesion_tschandl").is_dir():
        raise SystemExit(f"PH2 (real/) and HAM10000 images with expert masks not found under {data}: pass --data")
    started = time.perf_counter()
    pipeline = DermFusePipeline.from_pretrained(str(model))
    ph2 = ph2_table(pipeline, data, args.batch_size)
    ham = ham_table(model, data, args.limit)
    lesions = one_per_lesion(ham)
    report = {
        "model": model.name,
        "definitions": {"source": SOURCE, "partial": PARTIAL_LABEL, "not_computed": NOT_COMPUTED,
                        "module": "dermfuse/criteria.py"},
        "ph2": {"data": "PH2, 140 images (shared data real/), expert masks vs the model's segmenter masks",
                "images": int(len(ph2)), "mean_dice": float(ph2["dice"].mean()),
                "agreement": agreement(ph2), "kappa": "Cohen's kappa, linear weights, over each criterion's whole range",
                "by_class_expert_masks": by_class(ph2, "expert_"),
                "melanoma_vs_nevus": melanoma_vs_nevus(ph2, "expert_")},
        "ham10000": {"data": "HAM10000 test split of the model's splits.csv, expert (Tschandl) masks",
                     "images": int(len(ham)), "lesions": int(len(lesions)), "by_class": by_class(ham),
                     "melanoma_vs_nevus": melanoma_vs_nevus(lesions),
                     "test": "one-sided Mann-Whitney U (melanoma > nevus), one image per lesion; AUC = U / (n_mel · n_nv)"},
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "command": "python -m experiments.criteria" + (f" --limit {args.limit}" if args.limit else ""),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1, allow_nan=False))
    print_table(report)
    print(f"\nwrote {args.json} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
