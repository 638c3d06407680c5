"""Write ``docs/RESULTS.md`` from the JSON files the runs wrote: no number in it is typed by hand.

    .venv/bin/python benchmarks/results.py            # reads the files below, writes docs/RESULTS.md (+ figures)

Sources (each table names its own):
- ``checkpoints/dermfuse-tiny-phantom/metrics.json``: the phantom demo model (``python -m train demo``);
- ``checkpoints/dermfuse-tiny-ph2-melanoma/metrics.json``: cross-validation on the real PH2 images
  (``python -m train real``); its figure ``real_cases.png`` beside it is linked, not copied;
- ``docs/results/metadata_benchmark.json``: the real-metadata benchmark
  (``python -m train metadata-benchmark --out docs/results``), when it has been run.
A source that is missing is named as missing, with the command that makes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dermfuse.sources import CHECKPOINTS, DEMO_MODEL  # noqa: E402
from train.real import CASES_FIGURE, NAME as REAL_MODEL  # noqa: E402

METADATA_JSON = Path("docs/results/metadata_benchmark.json")


def number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def missing(path: Path, command: str) -> str:
    return f"*Not measured yet: `{path}` is missing. Make it with `{command}`.*\n"


def phantom_section(metrics: dict | None, path: Path) -> str:
    text = "## The phantom demo model (synthetic images, known truth)\n\n"
    if metrics is None:
        return text + missing(path, "python -m train demo")
    seg, test, cal = metrics["segmenter"]["test"], metrics["test"], metrics["calibration"]
    pipeline = metrics.get("pipeline_test") or {}
    text += (f"`{DEMO_MODEL}`, `tiny` preset, trained on {metrics['data']}. Held-out phantom test split "
             f"({test['cases']} images), source `{path}`:\n\n"
             "| part | metric | value |\n| --- | --- | --- |\n"
             f"| segmenter | Dice / IoU / thresholded Jaccard | {number(seg['dice'])} / {number(seg['iou'])} / "
             f"{number(seg['thresholded_jaccard'])} |\n"
             f"| classifier | balanced accuracy / macro AUC | {number(test['balanced_accuracy'])} / {number(test['macro_auc'])} |\n"
             f"| calibration | ECE before → after (T = {cal['temperature']:.3f}) | {number(cal['test_ece_before'])} → "
             f"{number(cal['test_ece_after'])} |\n")  # fmt: skip
    if pipeline:
        cls = pipeline["classification"]
        text += (f"| through the pipeline | Dice / balanced accuracy / macro AUC | {number(pipeline['segmentation']['dice'])} / "
                 f"{number(cls['balanced_accuracy'])} / {number(cls['macro_auc'])} |\n")  # fmt: skip
    recalls = " · ".join(f"`{c}` {number(test['per_class'][c]['recall'], 2)}" for c in metrics["classes"])
    reproduce = metrics.get("reproduce") or {}
    text += f"\nPer-class recall: {recalls}.\n\nCommand: `{reproduce.get('command', 'python -m train demo')}`"
    text += f" ({reproduce['wall_time']} on {reproduce.get('machine', 'this machine')}).\n" if reproduce.get("wall_time") else ".\n"
    return text


def real_section(metrics: dict | None, path: Path, docs: Path) -> str:
    text = "## Real dermoscopy: 140 PH2 images, cross-validated\n\n"
    cv = (metrics or {}).get("cross_validation")
    if cv is None:
        return text + missing(path, "python -m train real")
    seg, cls, gate = cv["segmentation"], cv["classification"], cv["ood"]
    labels = ", ".join(f"{n} {label}" for label, n in cv["labels"].items())
    text += (f"{cv['folds']}-fold cross-validation (stratified by label) on {cv['images']} real images ({labels}); every "
             f"fold's models start from the phantom demo model and learn only from the other folds. Masks are scored "
             f"through the pipeline at each image's resolution. Source `{path}` → `cross_validation`.\n\n"
             "| segmenter | Dice (± std over folds) | IoU | thresholded Jaccard | worst-decile Dice |\n"
             "| --- | --- | --- | --- | --- |\n")  # fmt: skip
    for recipe, r in seg.items():
        chosen = " (chosen)" if recipe == cv["segmenter_recipe"] else ""
        text += (f"| {recipe}{chosen} | {number(r['dice'])} ± {number(r['dice_fold_std'])} | {number(r['iou'])} | "
                 f"{number(r['thresholded_jaccard'])} | {number(r['worst_decile_dice'])} |\n")  # fmt: skip
    gap = seg[cv["segmenter_recipe"]]["dice"] - seg["phantom-only"]["dice"]
    text += (f"\nThe phantom-to-real gap: training on the real images adds {number(gap)} Dice to the phantom-only segmenter.\n\n"
             f"Melanoma vs. nevus, out-of-fold ({cls['cases']} images, {cls['melanomas']} melanomas):\n\n"
             "| AUC (pooled) | AUC per fold | balanced accuracy | sensitivity at 80 % specificity | ECE before → after |\n"
             "| --- | --- | --- | --- | --- |\n"
             f"| {number(cls['auc'])} | {number(cls['auc_fold_mean'])} ± {number(cls['auc_fold_std'])} | "
             f"{number(cls['balanced_accuracy'])} | {number(cls['sensitivity_at_80_specificity'])} | "
             f"{number(cls['ece_before'])} → {number(cls['ece_after'])} |\n\n"
             f"Out-of-distribution gate: {100 * gate['real_flagged']:.1f} % of the real images flagged (each by the fold "
             f"model that did not train on it); AUROC against generated non-dermoscopy images {number(gate['non_dermoscopy_auroc_min'])} "
             f"(worst fold).\n\n"
             f"Command: `{cv['command']}` ({cv['wall_time_minutes']} minutes in all, the final model "
             f"{cv['final_model_minutes']} minutes).\n")  # fmt: skip
    figure = ROOT / path.parent / CASES_FIGURE
    if figure.is_file():
        text += f"\n![best and worst out-of-fold masks]({os.path.relpath(figure, docs)})\n"
    return text


def metadata_section(report: dict | None, path: Path) -> str:
    text = "## Real metadata: age, sex and site alone (HAM10000, ISIC 2019 tables)\n\n"
    if report is None:
        return text + missing(path, "python -m train metadata-benchmark --out docs/results")
    for dataset, title in (("ham10000", "HAM10000 (7 classes)"), ("isic2019", "ISIC 2019 (8 classes), tested on HAM10000-disjoint rows")):
        if dataset not in report:
            continue
        text += f"{title}, 5 folds grouped by lesion, source `{path}` → `{dataset}`:\n\n"
        text += "| model | balanced accuracy | macro AUC |\n| --- | --- | --- |\n"
        for name, m in report[dataset]["models"].items():
            text += (f"| {name} | {number(m['balanced_accuracy']['mean'])} ± {number(m['balanced_accuracy']['std'])} | "
                     f"{number(m['macro_auc']['mean'])} ± {number(m['macro_auc']['std'])} |\n")  # fmt: skip
        text += "\n"
    return text


LIMITS = """## What this does not show

- Phantoms are not patients. The phantom numbers prove the machinery (segmentation, two streams,
  calibration, explanations) on images whose truth is known; they say nothing about real lesions.
- The only real images here are PH2's 140 (one clinic, one dermatoscope, nevi and melanomas only,
  28 melanomas): the cross-validated numbers carry wide uncertainty and do not cover other lesion
  types, cameras or skin tones.
- No HAM10000 / ISIC image could be downloaded where this was made: the paper-preset numbers on real
  data remain to be produced on a GPU with the README's recipe.
- The paper's ablation and background-shortcut claims are not measured in this file yet.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "RESULTS.md"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    demo_path = (CHECKPOINTS / DEMO_MODEL / "metrics.json").relative_to(ROOT)
    real_path = (CHECKPOINTS / REAL_MODEL / "metrics.json").relative_to(ROOT)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    sections = [
        "# dermfuse results\n",
        f"Generated by `python benchmarks/results.py` on {stamp} from the JSON files each section names; "
        f"machine: {platform.machine()}, CPU only.\n",
        phantom_section(load(ROOT / demo_path), demo_path),
        real_section(load(ROOT / real_path), real_path, out.parent),
        metadata_section(load(ROOT / METADATA_JSON), METADATA_JSON),
        LIMITS,
    ]
    out.write_text("\n".join(sections), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
