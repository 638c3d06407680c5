"""The sections of ``docs/RESULTS.md``, each rendered from the JSON file it names (no number typed by hand).

Each function takes the loaded JSON (``None`` when the file is missing: the section then says so,
with the command that makes it) and returns Markdown. ``experiments/results.py`` runs the commands
and puts the sections together.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dermfuse.sources import DEMO_MODEL  # noqa: E402
from experiments.real import CASES_FIGURE  # noqa: E402
from experiments.operating_points import operating_points_table  # noqa: E402
from experiments.skin_tone import band_table  # noqa: E402


def number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def missing(path: Path, command: str) -> str:
    return f"*Not measured yet: `{path}` is missing. Make it with `{command}`.*\n"


def rule_verdict(report: dict, stored: str, not_held: str = "it does not hold, so it was not stored",
                 held: str = "it holds") -> str:
    """How a study's pre-registered rule ended, in words: ``stored`` when it held and its value was stored, ``held``
    but not stored (``--store=false``), or ``not_held``."""
    if report["stored"]:
        return stored
    return f"{held}, but it was not stored (`--store=false`)" if report["rule_holds"] else not_held


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


def ham10000_section(metrics: dict | None, path: Path, speed: dict | None = None, speed_path: Path | None = None) -> str:
    """The shipped default model, learned from real HAM10000 / ISIC 2018 images, scored through the pipeline."""
    text = "## The real-data model: HAM10000 and ISIC 2018 Task 1 (the app's default)\n\n"
    if metrics is None or "pipeline_test" not in metrics:
        return text + missing(path, "python -m train ham10000")
    evaluation = metrics["pipeline_test"]
    cls, without = evaluation["classification"], evaluation["classification_without_metadata"]
    text += (f"`{metrics.get('reproduce', {}).get('command', 'python -m train ham10000')}`: the `small` preset (ImageNet "
             "EfficientNet-Lite0 encoders), segmenter on HAM10000 + ISIC 2018 Task 1 expert masks, 7-class classifier on "
             "HAM10000 with age, sex and site (each field dropped at random in training), split by lesion. Every number "
             f"below is the held-out test split through `DermFusePipeline` (the app's masks and lesion images). "
             f"Wall time: {metrics.get('reproduce', {}).get('wall_time', 'not recorded')}. Source `{path}`.\n\n"
             "| HAM10000 test split | images | balanced accuracy | macro AUC | ECE (calibrated) |\n| --- | --- | --- | --- | --- |\n"
             f"| with metadata | {cls['cases']} | {number(cls['balanced_accuracy'])} | {number(cls['macro_auc'])} | {number(cls['ece'])} |\n"
             f"| metadata unknown | {cls['cases']} | {number(without['balanced_accuracy'])} | {number(without['macro_auc'])} | "
             f"{number(without['ece'])} |\n\n"
             "| class | test images | recall | AUC (one-vs-rest) | sensitivity at 80 % specificity |\n| --- | --- | --- | --- | --- |\n")  # fmt: skip
    for name, row in cls["per_class"].items():
        text += (f"| `{name}` | {row['support']} | {number(row['recall'])} | {number(row['auc'])} | "
                 f"{number(row.get('sensitivity_at_80_specificity'))} |\n")  # fmt: skip
    text += ("\nSegmentation through the pipeline (per-image scores at each image's resolution, averaged; ISIC's "
             "thresholded Jaccard):\n\n| images | count | Dice | IoU | thresholded Jaccard |\n| --- | --- | --- | --- | --- |\n")
    names = {"ham10000_test": "HAM10000 test split", "isic2018_task1_test": "ISIC 2018 Task 1 test split",
             "ph2_all_cross_dataset": "PH2, all 140 (never trained on)"}
    for source, seg in metrics["segmentation_by_source"].items():
        if seg:
            text += (f"| {names.get(source, source)} | {seg['images']} | {number(seg['dice'])} | {number(seg['iou'])} | "
                     f"{number(seg['thresholded_jaccard'])} |\n")  # fmt: skip
    ph2 = metrics.get("ph2_melanoma_vs_nevus")
    if ph2:
        text += (f"\nCross-dataset, PH2 ({ph2['images']} images, another clinic): melanoma-score AUC for melanoma vs. nevus "
                 f"{number(ph2['auc'])}, sensitivity at 80 % specificity {number(ph2['sensitivity_at_80_specificity'])}.\n")
    other = metrics.get("isic2018_task1_test_classification")
    if other:
        pair, flagged = other["melanoma_vs_nevus"], other.get("ood_flagged") or {}
        text += (f"\nOther clinics, the ISIC 2018 Task 1 test split ({other['images']} images with ISIC 2019 diagnoses "
                 f"{', '.join(f'{n} {label}' for label, n in other['diagnoses'].items())}; the classifier never learned from ISIC "
                 f"images), with their patient data: accuracy {number(other['accuracy'])}, balanced accuracy over those labels "
                 f"{number(other['balanced_accuracy'])} ({number(other['balanced_accuracy_without_metadata'])} without metadata), "
                 f"ECE {number(other['ece'])}; melanoma against nevus AUC {number(pair['auc'])}, sensitivity at 80 % specificity "
                 f"{number(pair['sensitivity_at_80_specificity'])}."
                 + (f" Flagged out-of-distribution: {flagged['images']}, top class right on {number(flagged['accuracy_flagged'])} "
                    f"of them and {number(flagged['accuracy_not_flagged'])} of the others." if flagged.get("images") else "")
                 + "\n")
    if speed:
        text += (f"\nSpeed on this CPU (`benchmarks/bench_inference.py --model {speed['preset']}`, {speed['image']}, medians of "
                 f"{speed['repeats']}; source `{speed_path}`): plain diagnosis {1e3 * speed['plain_s']:.0f} ms, explained "
                 f"(both Grad-CAMs) {1e3 * speed['explained_s']:.0f} ms (ratio {speed['explained_over_plain']:.2f}), the usual "
                 f"eager fp32 + full Grad-CAM per stream {1e3 * speed['typical_explained_s']:.0f} ms; batch-{speed['batch']}, fast "
                 "path against eager fp32: " + "; ".join(f"{label} {speed[f'{work}_speedup']:.2f}×" for label, work in BATCH_WORK
                                                 if f"{work}_speedup" in speed)
                 + ".\n")  # fmt: skip
    return text


def trust_section(gate: dict | None, gate_path: Path, focus: dict | None, focus_path: Path) -> str:
    """The assessability gate per source, and where the heatmaps lie against the expert masks."""
    text = "## Trust on real images: the assessability gate and lesion focus\n\n### The assessability gate\n\n"
    if gate is None:
        text += missing(gate_path, "python -m train gate")
    else:
        text += (f"`{gate['command']}` on `{gate['model']}` ({gate['minutes']:.0f} min). An image is *not assessable* when a "
                 "rule fires (blank or a few flat colours, over- or under-exposed, no lesion found, a lesion that fills the "
                 "frame, and where the model stores them a shorter side under its `min_image_side`, a sharpness under "
                 "its `min_sharpness` or a lesion contrast under its `min_lesion_contrast`: every rule the app applies) or its dermoscopy score (quadratic logistic regression on colour, texture and lesion features and "
                 f"the image encoder's principal components) is under the threshold that {100 * gate['rejection_target_on_val']:.1f} % "
                 "of the *validation* dermoscopy falls below. Real dermoscopy: the model's test splits, PH2 and the CC0 "
                 "originals, none fitted on. Non-dermoscopy: five folds grouped by source picture, each scored by a gate "
                 f"fitted without it. Source `{gate_path}`.\n\n")
        text += "| source | images | not assessable (by the score alone) | AUROC against all real test dermoscopy | rules that fired |\n"
        text += "| --- | --- | --- | --- | --- |\n"
        for name, row in gate["sources"].items():
            rules = ", ".join(f"{k} ({v})" for k, v in row["rules"].items()) or "none"
            auroc = number(row["auroc"]) if "auroc" in row else "—"
            text += (f"| {name} | {row['images']} | {100 * row['rejected']:.1f} % ({100 * row['rejected_by_score']:.1f} %) | "
                     f"{auroc} | {rules} |\n")
        text += f"\nAUROC, every real test image against every non-dermoscopy image: {number(gate['auroc_all_negatives'])}.\n"
        for name, row in gate["sources"].items():
            if "in_model_split" in row:
                shared = row["in_model_split"]
                text += (f"\nOf the {row['images']} {name} images, {shared['model_train'] + shared['model_val']} are also in "
                         f"the model's split ({shared['model_train']} train, {shared['model_val']} val: ISIC 2018 Task 1 "
                         f"images, which the segmenter learned from or picked its epoch on); {shared['gate_score']} "
                         f"{'was' if shared['gate_score'] == 1 else 'were'} among the images the gate's score was fitted "
                         f"on and {shared['gate_threshold']} among those its threshold was set on: their row is not a "
                         "measure on unseen images.\n")
    text += "\n### Where the heatmaps lie, against the expert masks\n\n"
    if focus is None:
        return text + missing(focus_path, "python -m experiments.lesion_focus")
    text += (f"Share of each map's mass inside the Tschandl expert mask, {focus['images']} HAM10000 test images, "
             f"`{focus['model']}`, as the app computes the maps (Grad-CAM; Grad-CAM++ where Grad-CAM is degenerate). "
             f"Source `{focus_path}`.\n\n| stream | mean | median | share under 0.3 | a uniform map would score |\n"
             "| --- | --- | --- | --- | --- |\n")
    for stream, row in focus["shipped"].items():
        text += (f"| {stream} | {number(row['mean'])} | {number(row['median'])} | {100 * row['share_under_0.3']:.1f} % | "
                 f"{number(row['uniform_map']['mean'])} |\n")
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


def metadata_section(report: dict | None, path: Path, check: dict | None, check_path: Path) -> str:
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
    if check is not None and "ham10000" in report:
        ours = report["ham10000"]["models"]["logistic_regression"]
        gaps = {k: abs(ours[k]["mean"] - check[k]) for k in ("balanced_accuracy", "macro_auc")}
        verdict = "within" if max(gaps.values()) <= 0.005 else "**outside**"
        text += (f"Check: the logistic-regression row against an independent computation on the same folds "
                 f"(`experiments/independent_lr.py`: scikit-learn alone, straight from the CSV; source `{check_path}`): "
                 f"balanced accuracy {number(check['balanced_accuracy'], 4)} (difference {number(gaps['balanced_accuracy'], 4)}), "
                 f"macro AUC {number(check['macro_auc'], 4)} (difference {number(gaps['macro_auc'], 4)}): {verdict} 0.005.\n\n")  # fmt: skip
    seconds = report.get("wall_seconds")
    text += f"Command: `{report.get('command', 'python -m train metadata-benchmark')}`"
    text += f" ({seconds / 60:.1f} minutes).\n" if seconds else ".\n"
    return text


def pm(stat: dict | None, digits: int = 3) -> str:
    """``mean ± std`` of a summary statistic (``–`` when absent)."""
    return "–" if not stat else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def ablation_section(report: dict | None, path: Path, docs: Path) -> str:
    text = "## Ablation on phantoms: which parts earn their place\n\n"
    if report is None:
        return text + missing(path, "python -m train ablation --report docs/results")
    seeds = report["settings"]["seeds"] if not report["settings"]["quick"] else "0 (quick)"
    text += (f"Preset `{report['settings']['preset']}`, {report['data']['n']} phantoms (difficulty {report['data']['difficulty']}; "
             f"split {report['splits']['train']} / {report['splits']['val']} / {report['splits']['test']}), one stage-1 segmenter "
             f"(test Dice {number((report['segmenter'] or {}).get('dice'))}) for all runs, the same recipe and budget for every "
             f"variant, seeds {seeds}. Test split through the pipeline; mean ± std over seeds. Source `{path}`.\n\n"
             "| variant | lesion stream | metadata | fusion | balanced accuracy | macro AUC | ECE (calibrated) |\n"
             "| --- | --- | --- | --- | --- | --- | --- |\n")  # fmt: skip
    for variant, switches in report["variants"].items():
        m = report["summary"][variant]["clean"]
        fusion = switches.get("fusion", "–") if switches["use_lesion_stream"] else "–"
        text += (f"| {variant} | {'yes' if switches['use_lesion_stream'] else 'no'} | {'yes' if switches['use_metadata'] else 'no'} "
                 f"| {fusion} | {pm(m['balanced_accuracy'])} | {pm(m['macro_auc'])} | {pm(m['ece'])} |\n")  # fmt: skip
    classes = report["classes"]
    text += "\nRecall per class (mean over seeds):\n\n| variant | " + " | ".join(classes) + " |\n"
    text += "| --- " * (len(classes) + 1) + "|\n"
    for variant in report["variants"]:
        recall = report["summary"][variant]["clean"]["recall"]
        text += f"| {variant} | " + " | ".join(number((recall[c] or {}).get("mean"), 2) for c in classes) + " |\n"
    text += figure_links(report, path, docs)
    return text + command_line(report)


def command_line(report: dict) -> str:
    reused = report.get("runs_reused", 0)
    note = f"; {reused} of {len(report['runs'])} runs reused from an earlier call" if reused else ""
    return f"\nCommand: `{report['command']}` ({report['wall_minutes']} minutes{note}).\n"


def shortcut_section(report: dict | None, path: Path, docs: Path) -> str:
    text = "## The shortcut experiment: lesion or background?\n\n"
    if report is None:
        return text + missing(path, "python -m train ablation --shortcut=mel:0.9 --report docs/results")
    spec = report["data"]["shortcut"]
    text += (f"Trained on phantoms with violet marker ink beside the lesion in {spec['strength']:.0%} of `{spec['target']}` "
             f"images and {1 - spec['strength']:.0%} of the others. The same test phantoms are then re-rendered from their "
             f"seeds with the training bias (*present*), with no ink (*absent*), and with the bias reversed (ink on every "
             f"other-class phantom, on no `{spec['target']}`). Balanced accuracy, and lesion focus: the share of each "
             f"stream's Grad-CAM mass inside the predicted lesion mask (the image stream sees the whole picture; the lesion "
             f"stream sees only the lesion crop, so its focus is high by construction). Mean ± std over seeds; source `{path}`.\n\n"
             "| variant | BA present | BA absent | BA reversed | drop present → reversed | image-stream focus present → reversed "
             f"| `{spec['target']}` recall present → reversed |\n| --- | --- | --- | --- | --- | --- | --- |\n")  # fmt: skip
    for variant in report["variants"]:
        m = report["summary"][variant]
        fall = drop(report, variant)
        focus = [m[c]["lesion_focus"].get("image") for c in ("present", "reversed")]
        recall = [m[c]["recall"][spec["target"]] for c in ("present", "reversed")]
        text += (f"| {variant} | {pm(m['present']['balanced_accuracy'])} | {pm(m['absent']['balanced_accuracy'])} | "
                 f"{pm(m['reversed']['balanced_accuracy'])} | {fall['mean']:+.3f} ± {fall['std']:.3f} | {pm(focus[0], 2)} → {pm(focus[1], 2)} | "
                 f"{pm(recall[0], 2)} → {pm(recall[1], 2)} |\n")  # fmt: skip
    text += figure_links(report, path, docs)
    return text + command_line(report)


def figure_links(report: dict, path: Path, docs: Path) -> str:
    text = ""
    for figure in report.get("figures", []):
        target = ROOT / path.parent / figure
        if target.is_file():
            text += f"\n![{Path(figure).stem.replace('_', ' ')}]({os.path.relpath(target, docs)})\n"
    return text


def difference(report: dict, better: str, worse: str, condition: str = "clean", metric: str = "balanced_accuracy") -> tuple[float, float | None]:
    """Mean difference of two variants and the noise it must exceed: the root sum of squares of their
    standard deviations over seeds (``None`` with one seed: no spread, no verdict)."""
    a, b = report["summary"][better][condition][metric], report["summary"][worse][condition][metric]
    return compare(a, b)


def compare(a: dict, b: dict) -> tuple[float, float | None]:
    noise = (a["std"] ** 2 + b["std"] ** 2) ** 0.5 if min(a.get("n", 2), b.get("n", 2)) > 1 else None
    return a["mean"] - b["mean"], noise


def verdict(delta: float, noise: float | None) -> str:
    if noise is None:
        return "no verdict (one seed)"
    if delta > noise:
        return "supported"
    return "contradicted (worse)" if delta < -noise else "not shown (within noise)"


def claims_section(ablation: dict | None, shortcut: dict | None, metadata: dict | None) -> str:
    """The paper's three claims against the numbers above, with the rule that decides each verdict."""
    text = ("## The paper's claims, measured\n\n"
            "Rule: a difference counts when it exceeds the noise, the root sum of squares of the two sides' standard "
            "deviations over seeds (over folds for the real-metadata row). One seed gives no verdict.\n\n"
            "| claim | comparison | difference | noise | verdict |\n| --- | --- | --- | --- | --- |\n")  # fmt: skip
    rows = []
    if ablation:
        for metric in ("balanced_accuracy", "macro_auc"):
            for better, worse in (("lesion", "baseline"), ("full", "metadata")):
                rows.append(("1. the lesion stream helps", f"{better} − {worse}, {metric.replace('_', ' ')}", *difference(ablation, better, worse, metric=metric)))
        for better, worse in (("metadata", "baseline"), ("full", "lesion")):
            rows.append(("2. metadata helps (phantoms)", f"{better} − {worse}, balanced accuracy", *difference(ablation, better, worse)))
        rows.append(("cross-attention beats concatenation", "full − concat, balanced accuracy", *difference(ablation, "full", "concat")))
    if metadata and "ham10000" in metadata:
        models = metadata["ham10000"]["models"]
        for metric in ("balanced_accuracy", "macro_auc"):
            rows.append(("2. metadata transformer ≥ logistic regression (real HAM10000; noise over folds)",
                         f"transformer − logistic regression, {metric.replace('_', ' ')}",
                         *compare(models["metadata_transformer"][metric], models["logistic_regression"][metric])))
    if shortcut and "baseline" in shortcut["summary"]:
        rows.append(("3. precondition: the baseline learnt the shortcut", "baseline's drop, present − reversed",
                     *compare(drop(shortcut, "baseline"), {"mean": 0.0, "std": 0.0})))
        for variant in ("full", "lesion"):
            if variant in shortcut["summary"]:
                rows.append(("3. the dual model holds when the shortcut reverses", f"baseline's drop − {variant}'s drop",
                             *compare(drop(shortcut, "baseline"), drop(shortcut, variant))))
                rows.append(("3. the dual model looks at the lesion", f"{variant} − baseline, image-stream lesion focus (reversed)",
                             *focus_difference(shortcut, variant, "baseline", "reversed")))
    for claim, comparison, delta, noise in rows:
        text += f"| {claim} | {comparison} | {delta:+.3f} | {number(noise)} | {verdict(delta, noise)} |\n"
    return text if rows else text + "\n*No experiment has been run yet.*\n"


def drop(report: dict, variant: str) -> dict:
    """Balanced accuracy with the training bias minus with it reversed, per seed: mean, std, n."""
    drops = [r["test"]["present"]["balanced_accuracy"] - r["test"]["reversed"]["balanced_accuracy"]
             for r in report["runs"] if r["variant"] == variant]  # fmt: skip
    return {"mean": statistics.mean(drops), "std": statistics.stdev(drops) if len(drops) > 1 else 0.0, "n": len(drops)}


def focus_difference(report: dict, better: str, worse: str, condition: str) -> tuple[float, float | None]:
    focus = [report["summary"][variant][condition]["lesion_focus"]["image"] for variant in (better, worse)]
    return compare(*focus)


# The batch rows of benchmarks/bench_inference.py: what each times, and its key in the JSON.
BATCH_WORK = (("networks alone", "networks"), ("evaluation (`dermfuse evaluate`'s path) of that image", "evaluation"),
              ("evaluation of HAM10000 test-split images (256×256)", "evaluation_test_split"),
              ("full diagnoses (+ ABCD, measurements, skin tone)", "diagnosis"))


def inference_section(numbers: dict | None, path: Path) -> str:
    text = "## Inference cost (batch 1 and batch 16, this CPU)\n\n"
    if numbers is None:
        return text + missing(path, "python benchmarks/bench_inference.py --preset paper --repeats 5 --json " + str(path))
    return text + (f"`{numbers['preset']}` preset, {numbers['image']}, {numbers['threads']} threads, medians of {numbers['repeats']} "
                   f"(random weights: speed does not depend on them). Source `{path}`.\n\n"
                   "| measurement | value | target |\n| --- | --- | --- |\n"
                   f"| (a) plain diagnosis (segment + classify) | {numbers['plain_s'] * 1e3:.0f} ms | |\n"
                   f"| (b) explained diagnosis (+ both streams' Grad-CAM through the head) | {numbers['explained_s'] * 1e3:.0f} ms | |\n"
                   f"| (c) typical: eager fp32, one full pytorch-grad-cam call per stream | {numbers['typical_explained_s'] * 1e3:.0f} ms | |\n"
                   f"| (b) / (a) | {numbers['explained_over_plain']:.2f} | ≤ 1.15 |\n"
                   f"| (b) / (c) | {numbers['explained_over_typical']:.2f} | ≤ 0.35 |\n"
                   + "".join(f"| batch-{numbers['batch']} {label}, fast path / eager fp32 | {numbers[f'{work}_fast_images_per_s']:.1f} / "
                             f"{numbers[f'{work}_eager_images_per_s']:.1f} images/s = {numbers[f'{work}_speedup']:.2f}× | ≥ 2.5× |\n"
                             for label, work in BATCH_WORK if f"{work}_speedup" in numbers))  # fmt: skip


def training_section(numbers: dict | None, path: Path) -> str:
    text = "## Training throughput (one optimisation step, this CPU)\n\n"
    if numbers is None:
        return text + missing(path, "python benchmarks/bench_train.py --json " + str(path))
    text += (f"Batch {numbers['batch_size']}, median of {numbers['steps']} steps, {numbers['device']}, torch {numbers['torch']}; "
             f"random inputs at the preset's sizes (data loading runs beside the step). Source `{path}`.\n\n"
             "| preset | stage | input | fp32 (images/s) | bf16 autocast (images/s) |\n| --- | --- | --- | --- | --- |\n")  # fmt: skip
    for row in numbers["rows"]:
        speed = row["images_per_s"]
        text += (f"| {row['preset']} | {row['stage']} | {row['input'][0]}×{row['input'][1]} | {number(speed.get('fp32'), 1)} | "
                 f"{number(speed.get('bf16'), 1)} |\n")  # fmt: skip
    return text


def gpu_section(batch32: dict | None, batch128: dict | None, ablation: dict | None, folder: Path) -> str:
    """The GPU measurements: made by hand on a lent GPU (this script runs on the CPU), committed as JSON."""
    text = "## On a GPU (measured once by hand, not re-run by this script)\n\n"
    runs = [n for n in (batch32, batch128) if n]
    if not runs:
        return text + f"*Not measured: no JSON in `{folder}`. On a GPU: `python benchmarks/bench_train.py --device cuda --json FILE`.*\n"
    text += (f"Training throughput, one optimisation step, {runs[0]['device']}, torch {runs[0]['torch']} "
             f"(`python benchmarks/bench_train.py --device cuda --batch-size B --steps 5 --warmup 3`; sources in `{folder}`):\n\n"
             "| preset | stage | batch | fp32 (images/s) | bf16 autocast (images/s) |\n| --- | --- | --- | --- | --- |\n")  # fmt: skip
    for numbers in runs:
        for row in numbers["rows"]:
            speed = row["images_per_s"]
            text += (f"| {row['preset']} | {row['stage']} | {numbers['batch_size']} | {number(speed.get('fp32'), 0)} | "
                     f"{number(speed.get('bf16'), 0)} |\n")  # fmt: skip
    if ablation:
        text += (f"\n`{ablation['command']}` ran end to end on the same GPU in {ablation['wall_minutes']} minutes (every "
                 f"variant trained and scored at the paper's sizes, one seed, {ablation['recipe']['classifier']['epochs']} "
                 f"epochs, no ImageNet weights offline): the command works at `--preset=paper`; its accuracies after two "
                 f"epochs are not evidence and are not shown.\n")  # fmt: skip
    return text



def skin_tone_section(tones: dict | None, tones_path: Path, points: dict | None, points_path: Path) -> str:
    """Skin tone (ITA°) of the training, test and CC0 images with the model per band; the melanoma operating points."""
    text = "## Skin tone and melanoma operating points (the real-data model)\n\n### Skin tone (ITA°)\n\n"
    if tones is None:
        text += missing(tones_path, "python -m train skin-tone")
    else:
        test, cc0, training = tones["ham10000_test"], tones["isic_cc0"], tones["training"]
        agree = test["pipeline_vs_expert_mask"]
        text += (f"`{tones['command']}` on `{tones['model']}`. {tones['definition']} "
                 f"Sources: {tones['source']}. {tones['caveat']} Training images: {training['how']}; test images and the "
                 f"CC0 originals: around the lesion the pipeline found, as the app measures it. A band is judged only with "
                 f"at least {tones['thin']['min_images']} images (balanced accuracy, 7 classes) and {tones['thin']['min_melanomas']} "
                 f"melanomas and {tones['thin']['min_melanomas']} other lesions (melanoma AUC); intervals are bootstrap 95 % "
                 f"({tones['thin']['bootstrap']} resamples). Source `{tones_path}`.\n\n")
        text += band_table(tones) + "\n\n"
        quantiles, bands = test["ita_quantiles"] or {}, test["per_band"]
        melanomas = sum(row["melanomas"] for row in bands.values())
        darker = [row for band, row in bands.items() if band not in ("very light", "not measurable")]
        darker_nevi = sum(row["labels"].get("nv", 0) for row in darker)
        cast = ", ".join(f"`{label}` {100 * share:.0f} %" for label, share in test["colour_cast_by_label"].items())
        text += (f"- {bands['very light']['melanomas']} of the {melanomas} test melanomas lie in *very light*; the other "
                 f"measured bands hold {sum(row['images'] for row in darker)} test images, {darker_nevi} of them nevi. "
                 f"Within HAM10000 the band goes with the diagnosis (share of test images with a colour cast by label: "
                 f"{cast}), so these per-band numbers cannot say how the model does on darker skin: that needs "
                 "labelled images of darker skin, which these data lack.\n")
        text += (f"- Colour cast (median skin b* ≤ 0, ITA taken at its ±90° limit): {training['colour_cast']} of "
                 f"{training['measured']} measured training images, {test['colour_cast']} of {test['measured']} test images, "
                 f"{cc0['colour_cast']} of {cc0['measured']} CC0 originals. Under a dermatoscope's light the skin is often "
                 "bluish or pinkish, so these ITA values say more about the light and camera than about the skin.\n"
                 f"- HAM10000 test ITA quantiles (5 / 25 / 50 / 75 / 95 %): "
                 + " / ".join(f"{value:.0f}°" for value in quantiles.values()) + "; median L* "
                 f"{number(test['median_lightness'], 1)}, b* {number(test['median_yellowness'], 1)}.\n"
                 f"- CC0 originals: median L* {number(cc0['median_lightness'], 1)}, b* {number(cc0['median_yellowness'], 1)}.\n"
                 f"- Band from the pipeline's mask against the expert mask (test, {agree['images']} images measured by both): "
                 f"{100 * agree['same_band']:.1f} % the same band; median ITA difference {agree['median_abs_ita_difference']:.1f}°, "
                 f"{agree['median_abs_ita_difference_without_colour_cast']:.1f}° on the {agree['images_without_colour_cast']} "
                 "without a colour cast in either.\n")
    text += "\n### Melanoma operating points\n\n"
    if points is None:
        return text + missing(points_path, "python -m train operating-points")
    return text + (f"`{points['command']}` on `{points['model']}`: thresholds on the calibrated melanoma score chosen on the "
                   "**validation** split, stored in the model's `config.json` and card, then measured on the **test** split "
                   f"with each image's patient data and with none. Source `{points_path}`.\n\n"
                   + operating_points_table(points) + "\n")


LIMITS = """## What the phantom studies do not show

- Phantoms are not patients. The phantom numbers prove the machinery (segmentation, two streams,
  calibration, explanations) on images whose truth is known; they say nothing about real lesions
  (the real-image sections above do, within their own limits).
- The paper-preset numbers on real data remain to be produced on a GPU with the README's recipe.
- The ablation and the shortcut experiment use the `tiny` preset (narrow DenseNets trained from scratch,
  a few epochs on about a thousand phantoms) so that they run on a CPU; the paper's DenseNet201 with
  ImageNet weights may rank the variants differently. The same command takes `--preset=paper` on a GPU.
- The planted shortcut is one simple bias (violet ink beside the lesion). Real datasets carry others
  (rulers, hair, vignettes, skin tone, camera) that this experiment does not model.
"""


def framing_section(report: dict | None, path: Path) -> str:
    """How the image stream sees a non-square frame: squeezed whole, or its central square, on images never learned from."""
    text = "## Non-square images: the image stream's view\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.framing")
    text += ("The HAM10000 classifier learned from square images (the central 450×450 of each 600×450 original). On "
             "non-square dermoscopy it never learned from, no metadata, the same model with its image stream shown the "
             "whole frame squeezed into its square input, or the frame's central square (what its config says since "
             f"2026-12-06). `{report['command']}` ({report['minutes']:.1f} min), source `{path}`.\n\n"
             "| images | count | view | melanoma AUC | balanced accuracy (classes present) | log-loss |\n"
             "| --- | --- | --- | --- | --- | --- |\n")
    names = {"isic2018_task1_train_val": "ISIC 2018 Task 1, train + val, ISIC 2019 labels", "ph2": "PH2",
             "isic_cc0": "CC0 originals"}
    views = {"whole": "whole, squeezed", "central_square": "central square"}
    for name, entry in report["sets"].items():
        labels = ", ".join(f"{count} {label}" for label, count in entry["labels"].items())
        for framing, view in views.items():
            row = entry[framing]
            text += (f"| {names.get(name, name)} | {entry['images']} ({labels}) | {view} | {row['melanoma_auc']:.3f} | "
                     f"{row['balanced_accuracy']:.3f} | {row['log_loss']:.3f} |\n")
    return text


def other_clinics_section(report: dict | None, path: Path) -> str:
    """Where the classifier fails on other clinics' images: melanoma against nevus by kind of image."""
    text = "## Other clinics: on which images melanoma is told from nevus worse\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.other_clinics")
    labels = ", ".join(f"{count} {label}" for label, count in report["labels"].items())
    median = report["median_score"]
    text += ("ISIC 2018 Task 1 images of the model's train and validation splits with an ISIC 2019 diagnosis of nevus or "
             f"melanoma ({labels}; the classifier never learned from ISIC images, the segmenter from the train split's "
             "masks; the test split is left alone), each through the pipeline with its age, sex and site. The melanoma "
             "score's AUC, melanoma against nevus, overall and per group; frame shapes are the 256-px-wide copies' width / "
             f"height (standing for the originals' cameras or collections), groups of fewer than 30 left out; an AUC from "
             "fewer than ten melanomas says little. "
             f"`{report['command']}` ({report['minutes']:.1f} min), source `{path}`. Over all images: median melanoma score "
             f"{median['melanoma']:.3f} for the melanomas and {median['nevus']:.3f} for the nevi.\n\n"
             "| group | value | images | melanomas | AUC |\n| --- | --- | --- | --- | --- |\n")
    rows = {"all": {"": report["all"]}, "without metadata": {"": report["without_metadata"]}, **report["groups"]}
    for group, entries in rows.items():
        for value, entry in entries.items():
            auc = "–" if entry["auc"] is None else f"{entry['auc']:.3f}"
            text += f"| {group} | {value} | {entry['images']} | {entry['melanomas']} | {auc} |\n"
    return text


RESOLUTION_NUMBERS = {"macro_auc": "macro AUC", "melanoma_auc": "melanoma AUC", "balanced_accuracy": "balanced accuracy",
                      "dice_ham10000": "Dice on HAM10000", "dice_isic2018_task1": "Dice on ISIC 2018"}


def resolution_section(report: dict | None, path: Path) -> str:
    """How small an image the model still judges as well as at full size: validation images made smaller."""
    text = "## Small images: how few pixels the model can judge\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.resolution")
    images, tolerance = report["images"], report["tolerance"]
    split = "validation" if report["split"] == "val" else report["split"]
    text += (f"The model's {split}-split images ({images['ham10000']:,} HAM10000 with their age, sex and site; "
             f"{images['isic2018_task1']:,} ISIC 2018 Task 1 for their masks), each shrunk so that its shorter side is the "
             f"row's (Lanczos, aspect kept; 'full' is as stored: 256 px HAM10000, 166–192 px ISIC) and diagnosed through the "
             f"pipeline ({report['path']} path); Dice against the expert masks shrunk alike. `{report['command']}` "
             f"({report['minutes']:.1f} min), source `{path}`. The rule, fixed before the numbers were seen: the least side "
             f"is the smallest at which that size and every larger one stay at most this far under full size: "
             + ", ".join(f"{RESOLUTION_NUMBERS[name]} {value}" for name, value in tolerance.items())
             + ". " + resolution_verdict(report) + "\n\n"
             "| shorter side | balanced accuracy | macro AUC | melanoma AUC | ECE | not assessable (other rules) | "
             "Dice HAM10000 | Dice ISIC 2018 |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for side, row in report["sides"].items():
        text += (f"| {side} | {row['balanced_accuracy']:.3f} | {row['macro_auc']:.3f} | {row['melanoma_auc']:.3f} | "
                 f"{row['ece']:.3f} | {row['not_assessable']} | {row['dice_ham10000']:.3f} | {row['dice_isic2018_task1']:.3f} |\n")
    return text


def resolution_verdict(report: dict) -> str:
    """What the resolution study's rule gave, and whether the model stores it."""
    if report["least_side"] is None:
        return "By it no side qualifies (even the largest fell outside the tolerance), so nothing was stored."
    side = f"By it: **{report['least_side']} px**"
    if report["stored"]:
        return side + ", stored as the model's `min_image_side`; a smaller image is not assessable and is told why."
    return side + ", not stored (`--store=false`)."


def focus_section(report: dict | None, path: Path) -> str:
    """How the model fares on blurred images, and the least sharpness it needs."""
    text = "## Out of focus: blurred images and the least sharpness\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.focus")
    limits = report["limits"]
    verdict = rule_verdict(report, "it holds, so the model stores it as `min_sharpness`: a softer image is not "
                                   "assessable and is told why")
    text += (f"The model's {report['validation_images']:,} validation-split HAM10000 images with their age, sex and site, "
             "each diagnosed as it is, blurred and enlarged from a small copy, through the pipeline "
             f"({report['path']} path). `{report['command']}` ({report['minutes']:.1f} min), source `{path}`. Sharpness is "
             "the gate's (log variance of the Laplacian of the 128-px grey thumbnail); the least sharpness, "
             f"**{report['least_sharpness']:.2f}**, is its {100 * report['rejection']:g} % quantile over the "
             f"{report['training_images']:,} training-split images. The rule, fixed after a scratch look at the sharpness of "
             "training, validation and other real images and of blurred copies, before this study's numbers: it may "
             f"turn away at most {100 * limits['validation']:g} % of the validation images as they are, must catch at "
             f"least {100 * limits['blur_2_caught']:g} % of those blurred with σ = 2, and may turn away at most "
             f"{100 * limits['other_sources']:g} % of each other real source below; {verdict}. 'Flagged before': not "
             "assessable by the other checks, or warned as out of distribution.\n\n"
             "| validation images | balanced accuracy | macro AUC | melanoma AUC | ECE | median top probability | "
             "flagged before | under the least sharpness |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for name, row in report["conditions"].items():
        text += (f"| {name} | {row['balanced_accuracy']:.3f} | {row['macro_auc']:.3f} | {row['melanoma_auc']:.3f} | "
                 f"{row['ece']:.3f} | {row['median_top_probability']:.3f} | {100 * row['flagged_before']:.1f} % | "
                 f"{100 * row['under_least_sharpness']:.1f} % |\n")
    text += "\n| other real dermoscopy, as it is | images | under the least sharpness |\n| --- | --- | --- |\n"
    for name, entry in report["other_sources"].items():
        text += f"| {name} | {entry['images']} | {100 * entry['under_least_sharpness']:.1f} % |\n"
    return text


def bare_skin_section(report: dict | None, path: Path) -> str:
    """How the model fares on squares of bare skin cut from real images, and the least lesion contrast it needs."""
    text = "## Bare skin: squares without a lesion and the least lesion contrast\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.bare_skin")
    limits, validation = report["limits"], report["validation"]
    verdict = rule_verdict(report, "it holds, so the model stores it as `min_lesion_contrast`: an image whose lesion "
                                   "stands out less is not assessable and is told why")
    text += ("The segmenter learned from images that always hold a lesion: on bare skin it still outlines a patch, and "
             "the classifier scores it. Each image is cut to its largest square free of its expert lesion mask (grown by "
             f"{report['margin_px']} px) with a side of at least the model's least side, {report['least_side']} px; the "
             f"square is diagnosed without metadata through the pipeline ({report['path']} path). "
             f"`{report['command']}` ({report['minutes']:.1f} min), source `{path}`. The lesion contrast is the gate's "
             "(ΔE\\*ab between the segmenter's lesion and a thin ring of skin around it, on the 128-px white-balanced "
             f"thumbnail); the least contrast, **ΔE\\*ab {report['least_contrast']:.2f}**, is its "
             f"{100 * report['rejection']:g} % quantile over the {report['training_images']:,} training-split images. The "
             "rule, fixed after a scratch look at the contrast of validation images and of bare squares of validation "
             "images and PH2, before this study's numbers: it may turn away at most "
             f"{100 * limits['validation']:g} % of the validation images as they are (here "
             f"{100 * validation['images_turned_away']:.1f} %) and at most {100 * limits['other_sources']:g} % of each "
             "other real source, and must turn away at least "
             f"{100 * limits['validation_squares_caught']:g} % of the validation squares the app diagnoses without it "
             f"(here {validation['squares_caught']} of {validation['squares_diagnosed_before']}); {verdict}. The test "
             "splits' and PH2's squares are reported, not chosen on.\n\n"
             "| real dermoscopy, as it is | images | diagnosed without the rule | under the least contrast | diagnosed with it |\n"
             "| --- | --- | --- | --- | --- |\n")
    for name, row in report["images"].items():
        text += (f"| {name} | {row['images']:,} | {100 * row['assessable_before']:.1f} % | "
                 f"{100 * row['under_least_contrast']:.1f} % | {100 * row['assessable_after']:.1f} % |\n")
    by_class: dict[str, list[int]] = {}
    for row in report["images"].values():
        for label, (turned, seen) in row["turned_away_by_class"].items():
            by_class[label] = [a + b for a, b in zip(by_class.get(label, [0, 0]), (turned, seen))]
    turned = sum(turned for turned, _ in by_class.values())
    right = sum(row["turned_away_top_class_right"] for row in report["images"].values())
    text += (f"\nOf the real images above with a known diagnosis, it turned away {turned}: "
             + ", ".join(f"{label} {turned} of {seen:,}" for label, (turned, seen) in by_class.items() if turned)
             + f" (of each diagnosis's images). The model's top class was right on {right} of them.\n")
    text += ("\n| bare-skin squares of | squares | diagnosed without the rule | their median top probability | "
             "turned away by it | still diagnosed |\n| --- | --- | --- | --- | --- | --- |\n")
    for name, row in report["squares"].items():
        sure = "—" if row["median_top_probability_before"] is None else f"{row['median_top_probability_before']:.2f}"
        text += (f"| {name} | {row['squares']} | {row['diagnosed_before']} | {sure} | {row['caught']} | "
                 f"{row['diagnosed_after']} |\n")
    return text


def cell(value: float | None) -> str:
    """A number of a condition table ('—' where it is undefined, as an AUC without both classes)."""
    return "—" if value is None else f"{value:.3f}"


def condition_cells(row: dict) -> str:
    """The cells of one condition in the tables of a change to the images (orientation, artefacts): balanced accuracy,
    macro AUC, melanoma AUC, ECE, the share flagged, and how far the scores moved."""
    return (f"{cell(row['balanced_accuracy'])} | {cell(row['macro_auc'])} | {cell(row['melanoma_auc'])} | "
            f"{cell(row['ece'])} | {100 * row['flagged']:.1f} % | {moved_cells(row)}")


def moved_cells(row: dict) -> str:
    """The 'median change | top class changed' cells of a row measured against the image as it is ('— | —' for that
    row itself)."""
    if "median_change" not in row:
        return "— | —"
    return f"{row['median_change']:.3f} | {100 * row['top_class_changed']:.1f} %"


def ph2_table(rows: dict) -> str:
    """PH2's rows of a study of changed images: melanoma against nevus AUC and how far the scores moved."""
    text = "| PH2 | melanoma against nevus AUC | median change | top class changed |\n| --- | --- | --- | --- |\n"
    for name, row in rows.items():
        auc = "—" if row["melanoma_auc"] is None else f"{row['melanoma_auc']:.3f}"
        text += f"| {name} | {auc} | {moved_cells(row)} |\n"
    return text


def capture_section(report: dict | None, path: Path) -> str:
    """How far the scores move when the same lesion is compressed, white-balanced or exposed differently."""
    text = "## The same lesion captured differently: compression, colour and light\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.capture")
    ph2, balance = report["ph2_full_size"], report["white_balance"]
    text += (f"The model's {report['validation_images']:,} validation-split HAM10000 images (256 px, stored as JPEG quality "
             "75) with their age, sex and site, each diagnosed as it is and changed in one way, through the pipeline "
             f"({report['path']} path). `{report['command']}` ({report['minutes']:.1f} min), source `{path}`. Nothing is "
             "stored in the model; the compression caution's limits (`COMPRESSION_WARNED`, `dermfuse/assess.py`) are read off "
             "the JPEG rows here and below: the qualities at which the top class changed on more than one image in ten. "
             "'Flagged': not assessable, or warned as out of distribution; 'moved': against "
             "the same image as it is, the median of each image's largest probability change, and the share whose top "
             "class changed.\n\n")
    head = ("balanced accuracy | macro AUC | melanoma AUC | ECE | median top probability | flagged | median change | "
            "top class changed |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")

    def rows(table: dict) -> str:
        lines = ""
        for name, row in table.items():
            lines += (f"| {name} | {row['balanced_accuracy']:.3f} | {row['macro_auc']:.3f} | {row['melanoma_auc']:.3f} | "
                      f"{row['ece']:.3f} | {row['median_top_probability']:.3f} | {100 * row['flagged']:.1f} % | "
                      f"{moved_cells(row)} |\n")
        return lines

    text += "| validation images | " + head + rows(report["conditions"])
    text += (f"\nThe {ph2['images']} PH2 images ({ph2['melanomas']} melanomas; 765×572, never trained on), saved again at "
             "their own size, without metadata: the networks see them shrunk to their input, and JPEG's 8-px blocks "
             "shrunk with them.\n\n" + ph2_table(ph2["rows"]))
    isic = balance["isic2018_task1_validation"]
    applied = ("applied by the model as well (it balances every image itself): balanced twice here, "
               if balance.get("model_balances") else "not applied by the model: ")
    text += ("\nWhite balance as a remedy, " + applied + "each image white-balanced (Shades of Gray, p = 6) "
             "to the training images' mean light, chromaticity (R, G, B) "
             + ", ".join(f"{v:.3f}" for v in balance["reference_chromaticity"])
             + f", before the model; 'moved' is against the image as it is, unbalanced. ISIC 2018 Task 1 validation "
             f"({isic['images']} nevi and melanomas, {isic['melanomas']} melanomas; another clinic's cameras), melanoma against "
             f"nevus AUC: {isic['as it is']:.3f} as it is, {isic['white-balanced']:.3f} white-balanced.\n\n"
             "| validation images, white-balanced | " + head + rows(balance["validation"]))
    return text


def orientation_section(report: dict | None, path: Path) -> str:
    """How far the scores and heatmaps move when the same image is turned or mirrored."""
    text = "## The same lesion turned or mirrored: orientation\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.orientation")
    ph2, maps = report["ph2"], report["heatmaps"]
    text += (f"The model's {report['validation_images']:,} validation-split HAM10000 images with their age, sex and site, "
             "each diagnosed in the eight orientations of the square, through the pipeline "
             f"({report['path']} path). Training showed the classifier all eight. `{report['command']}` "
             f"({report['minutes']:.1f} min), source `{path}`. 'Moved': against the image as it is, the median of each "
             "image's largest probability change, the share whose top class changed, and the median Dice of the "
             "segmenter's mask, turned back, against its mask of the image as it is. The top class was the same in all "
             f"eight orientations for **{100 * report['same_top_class_in_all']:.1f} %** of the images.\n\n"
             "| validation images | balanced accuracy | macro AUC | melanoma AUC | ECE | flagged | median change | "
             "top class changed | mask agreement (Dice) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for name, row in report["orientations"].items():
        agreement = f"{row['mask_agreement']:.3f}" if "mask_agreement" in row else "—"
        text += f"| {name} | {condition_cells(row)} | {agreement} |\n"

    text += (f"\nHeatmaps: the first {maps['images']} validation images explained in each orientation, each map turned "
             "back into the frame of the image as it is: its median correlation with the map of the image as it is "
             "(1: it turned with the image), and the median change of its lesion focus (share of mass inside the "
             "predicted lesion).\n\n| turned | image stream: correlation | lesion focus change | lesion stream: "
             "correlation | lesion focus change |\n| --- | --- | --- | --- | --- |\n")
    for name, streams in maps["orientations"].items():
        text += f"| {name} | " + " | ".join(f"{cell(streams[s]['median_correlation'])} | "
                                              f"{cell(streams[s]['median_focus_change'])}" for s in ("image", "lesion")) + " |\n"
    text += (f"\nThe {ph2['images']} PH2 images ({ph2['melanomas']} melanomas; 765×572, never trained on; without "
             "metadata): a quarter turn makes them portrait. The top class was the same in all eight for "
             f"{100 * ph2['same_top_class_in_all']:.1f} %.\n\n" + ph2_table(ph2["rows"]))
    return text


def artefacts_section(report: dict | None, path: Path) -> str:
    """How far the scores, masks and heatmaps move with air bubbles, ink or a ruler in the image."""
    text = "## Air bubbles, ink and rulers in the image\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.artefacts")
    maps = report["heatmaps"]
    text += (f"The model's {report['validation_images']:,} validation-split HAM10000 images with their age, sex and site, "
             "each diagnosed as it is and with one real artefact of each kind, placed around the expert lesion mask as "
             f"the templates' authors describe ({report['templates']}), through the pipeline ({report['path']} path). "
             f"`{report['command']}` ({report['minutes']:.1f} min), source `{path}`. 'Moved': against the image as it "
             "is, the median of each image's largest probability change and the share whose top class changed. Mask "
             "Dice: the segmenter's mask against the expert mask, median.\n\n"
             "| validation images | balanced accuracy | macro AUC | melanoma AUC | ECE | flagged | median change | "
             "top class changed | mask Dice | artefact's share of the image |\n"
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for kind, row in report["conditions"].items():
        name = report["names"].get(kind, kind)
        area = f"{100 * row['artefact_area']:.1f} %" if "artefact_area" in row else "—"
        text += f"| {name} | {condition_cells(row)} | {cell(row['mask_dice'])} | {area} |\n"
    text += (f"\nHeatmaps: the first {maps['images']} validation images explained as they are and with each artefact: the "
             "median share of each map's mass on the artefact's pixels, and of the map of the image as it is on the same "
             "pixels.\n\n| artefact | its share of the image | image stream: with it | as it is | lesion stream: with it "
             "| as it is |\n| --- | --- | --- | --- | --- | --- |\n")
    for kind, row in maps["kinds"].items():
        text += (f"| {report['names'].get(kind, kind)} | {100 * row['artefact_area']:.1f} % | " + " | ".join(
            f"{cell(row['with_artefact'][s])} | {cell(row['as_it_is_same_pixels'][s])}" for s in ("image", "lesion"))
            + " |\n")
    if "ph2" in report:
        ph2 = report["ph2"]
        text += (f"\nThe {ph2['images']} PH2 images ({ph2['melanomas']} melanomas; 765×572, never trained on; without "
                 "metadata), each artefact placed around the expert mask (reported, added after the validation numbers "
                 "were seen):\n\n" + ph2_table({report["names"].get(k, k): row for k, row in ph2["rows"].items()}))
    return text


def stability_section(report: dict | None, path: Path) -> str:
    """How far the scores move when the same image is saved once more as JPEG."""
    text = "## The same image saved again: how far the scores move\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.stability")
    text += (f"HAM10000 test-split images, each diagnosed as it is and after one more JPEG save at quality "
             f"{report['quality']} (no metadata). `{report['command']}` ({report['minutes']:.1f} min), source `{path}`.\n\n"
             "| path | images | largest probability change per image: median | 90th percentile | largest | over 0.05 | "
             "top class changed | lesion box moved |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for name, row in report["paths"].items():
        text += (f"| {name} | {row['images']} | {row['median']:.3f} | {row['p90']:.3f} | {row['largest']:.3f} | "
                 f"{row['over_0.05']} | {100 * row['top_class_changed']:.1f} % | {row['box_moved']} |\n")
    return text


def criteria_section(report: dict | None, path: Path) -> str:
    """The ABCD criteria: predicted against expert masks on PH2, and melanoma against nevus on HAM10000 and PH2."""
    text = "## ABCD criteria of dermoscopy: stability and what they separate\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.criteria")
    ph2, ham = report["ph2"], report["ham10000"]
    agreement = ph2["agreement"]
    text += ("A (asymmetry, 0–2), B (border, 0–8) and C (colours, 1–6) of the ABCD rule of dermoscopy (Stolz et al. 1994) "
             "as `dermfuse/criteria.py` defines them (each definition is on the app's ABCD panel and in the JSON result); D "
             f"is not computed, so only the {report['definitions']['partial']} is given. `{report['command']}` "
             f"({report['seconds']:.0f} s on {report['machine']}), source `{path}`. No dermatologist rated these images, so "
             "this measures stability and separation, not agreement with clinicians. The border definition was revised "
             "once, after a first version (the lightness step measured in fixed bands at the outline) agreed poorly between "
             "predicted and expert masks on these same PH2 images: B's agreement below is not an independent test.\n\n"
             f"**Predicted against expert masks**, PH2 ({agreement['images']} images; the shipped segmenter's masks, mean Dice "
             f"{ph2['mean_dice']:.3f} with the experts'), the same pixels:\n\n"
             "| criterion | same score | Cohen's kappa (linear) | mean absolute difference | mean, expert masks | mean, predicted |\n"
             "| --- | --- | --- | --- | --- | --- |\n")
    for name in ("asymmetry", "border", "colours"):
        row = agreement[name]
        text += (f"| {name} | {100 * row['exact_agreement']:.1f} % | {number(row['kappa_linear'])} | "
                 f"{number(row['mean_absolute_difference'], 2)} | {number(row['expert_mean'], 2)} | "
                 f"{number(row['predicted_mean'], 2)} |\n")
    text += (f"\n**By diagnosis**, HAM10000 test split ({ham['images']} images, expert masks): mean score per class\n\n"
             "| class | images | A | B | C | partial score |\n| --- | --- | --- | --- | --- | --- |\n")
    for label, row in ham["by_class"].items():
        text += (f"| `{label}` | {row['images']} | {number(row['asymmetry']['mean'], 2)} | {number(row['border']['mean'], 2)} | "
                 f"{number(row['colours']['mean'], 2)} | {number(row['partial']['mean'], 2)} |\n")
    for title, test in (("HAM10000 test split, one image per lesion", ham["melanoma_vs_nevus"]),
                        ("PH2, expert masks", ph2["melanoma_vs_nevus"])):
        text += (f"\n**Do melanomas score higher than nevi?** {title} ({test['melanomas']} melanomas, {test['nevi']} nevi), "
                 "one-sided Mann-Whitney U; AUC = P(a melanoma scores higher than a nevus), ties counted half:\n\n"
                 "| score | melanoma mean | nevus mean | AUC | p | holds (p < 0.05) |\n| --- | --- | --- | --- | --- | --- |\n")
        for name in ("asymmetry", "border", "colours", "partial"):
            row = test[name]
            text += (f"| {name} | {number(row['mel_mean'], 2)} | {number(row['nv_mean'], 2)} | {number(row['auc'])} | "
                     f"{row['p_value']:.1e} | {'yes' if row['holds'] else '**no**'} |\n")
    frequency = {label: row.get("colour_frequency") for label, row in ham["by_class"].items()}
    if all(frequency.values()):
        colours = list(next(iter(frequency.values())))
        text += ("\nShare of HAM10000 test images in which each colour counts (≥ 5 % of the lesion):\n\n"
                 f"| class | {' | '.join(colours)} |\n| --- |{' --- |' * len(colours)}\n")
        for label, row in frequency.items():
            text += f"| `{label}` | " + " | ".join(f"{100 * row[c]:.0f} %" for c in colours) + " |\n"
        rows = ham["by_class"]
        if {"mel", "nv"} <= set(frequency) and "red" in colours and "median_skin_a" in rows["nv"]:
            text += (f"\nRed counts in {100 * frequency['nv']['red']:.0f} % of the nevi and {100 * frequency['mel']['red']:.0f} % "
                     "of the melanomas. The skin around the nevi is redder before the white balance (median CIELAB a* "
                     f"{rows['nv']['median_skin_a']:.1f} against {rows['mel']['median_skin_a']:.1f} around the melanomas): a "
                     "camera's pinkish cast that the white balance does not fully undo inside the lesion is the likely reason "
                     "the colour count does not separate the two classes here, while on PH2 (one dermatoscope) it does.\n")
    return text


def preset_comparison_section(report: dict | None, path: Path) -> str:
    """Issue 13's preset choice: the ``tiny`` classifier from scratch against the ``small`` one at the same budget."""
    text = "### Why the `small` preset: against `tiny` from scratch, same split, masks and budget\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.tiny_vs_small")
    small, tiny = report["small"], report["tiny"]

    def cells(metrics: dict | None) -> str:
        if not metrics:
            return "– | – | –"
        return " | ".join(number(metrics.get(k)) for k in ("balanced_accuracy", "macro_auc", "ece"))

    text += (f"Budget: {report['budget']} ({report['budget_seconds'] / 60:.1f} minutes of wall time on this CPU); split "
             f"`{Path(report['split']).name}` of the shipped model; both classifiers learn from the lesion images of the "
             "same segmenter's masks. Validation is the split that picks models; the tiny run's test numbers are beside "
             f"the small run's final ones. Source `{path}`.\n\n"
             "| classifier | encoders | epochs | validation balanced accuracy | macro AUC | ECE before calibration |\n| --- | --- | --- | --- | --- | --- |\n"
             f"| small, at the budget | {small['encoders']} | {small['epochs_at_budget']} | {cells(small['val_at_budget'])} |\n"
             f"| tiny, at the budget | {tiny['encoders']} | {tiny['epochs_at_budget']} | {cells(tiny['val_at_budget'])} |\n"
             f"| small, its full schedule (shipped) | {small['encoders']} | {small['epochs_final']} | {cells(small['val_final'])} |\n\n"
             "| test split (training-time path, cached masks) | balanced accuracy | macro AUC | ECE after calibration |\n| --- | --- | --- | --- |\n"
             f"| tiny, at the budget | {cells(tiny['test_at_budget'])} |\n"
             f"| small, its full schedule | {cells(small['test_final'])} |\n\n"
             f"The tiny run {'finished its own schedule' if tiny['epochs_at_budget'] >= 15 else 'was cut'} within the budget "
             f"({tiny['epochs_at_budget']} epochs); the small run was then {small['epochs_at_budget']} epochs into its "
             f"{small['epochs_final']}-epoch schedule. Command: `{report['command']}`.\n")  # fmt: skip
    return text


def dark_frame_section(report: dict | None, path: Path) -> str:
    """How a dermatoscope's dark round frame moves the scores, with the frame kept and filled in."""
    text = "## A dermatoscope's dark round frame, kept and filled in\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.dark_frame")
    sets, limits = report["sets"], report["limits"]
    failed = ", ".join(condition for condition, held in report["rule"].items() if not held)
    verdict = rule_verdict(report, "every condition holds, so the model stores `dark_frame: filled`",
                           f"not every condition holds ({failed}), so the model keeps `dark_frame: kept`",
                           held="every condition holds")
    text += ("The classifier learned from HAM10000's central crops, which (almost) never show the near-black frame "
             "around a dermatoscope's round field. Each set is diagnosed through the pipeline "
             f"({report['path']} path) twice: the frame kept, and filled in from the skin next to it with the image "
             "stream's view taken from the lit field's box (`dermfuse/data/field_of_view.py`). Validation and its framed "
             "copies with their age, sex and site; the real framed images (ISIC 2018 Task 1 train and validation "
             "splits with an ISIC 2019 diagnosis, and the CC0 originals, whose frame covers at least 2 % of the image; "
             "the classifier learned from none) and PH2 without. "
             f"`{report['command']}` ({report['minutes']:.1f} min), source `{path}`. The rule, written before this "
             "study's numbers (after a scratch probe of 400 validation images and 28 real framed images): validation "
             f"balanced accuracy and macro AUC at most {limits['validation_drop']} lower, the top class changed on at most "
             f"{100 * limits['validation_top_changed']:g} % of the validation images, balanced accuracy higher behind each "
             "drawn frame, log-loss on the real framed images not higher, PH2 melanoma AUC at most "
             f"{limits['ph2_auc_drop']} lower; {verdict}.\n\n"
             "| images | framed (found) | frame | balanced accuracy | macro AUC | melanoma AUC | log-loss | top class "
             "unlike the image as it is | flagged by the app | segmenter Dice |\n"
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    number = lambda value, digits=3: "" if value is None else f"{value:.{digits}f}"  # noqa: E731
    for name, entry in sets.items():
        for mode in ("kept", "filled"):
            row = entry[mode]
            changed = f"{100 * row['top_changed']:.1f} %" if "top_changed" in row else ""
            text += (f"| {name} ({row['images']:,}) | {entry['framed_images']:,} | {mode} | "
                     f"{number(row['balanced_accuracy'])} | {number(row['macro_auc'])} | {number(row['melanoma_auc'])} | "
                     f"{number(row['nll'])} | {changed} | {100 * row['flagged']:.1f} % | "
                     f"{number(row.get('segmenter_dice'))} |\n")
    return text + ("\nFlagged: not assessable, or warned as unlike the training images (the out-of-distribution score "
                   "over its threshold). Its capture statistics see the image as it is, frame and all; its deep "
                   "features are the image stream's, of the view that stream saw. Segmenter Dice: against the expert "
                   "masks, where there are any; the segmenter sees the image as it is in both modes, and lesion hidden "
                   "behind a drawn frame counts as missed.\n")
