"""The real-image sections of ``docs/RESULTS.md``: the paper's claims on HAM10000, the ablation, lesion focus
against the expert masks, the artefact shortcut and the calibration stickers, each rendered from the JSON of
``python -m train real-ablation`` (``real_ablation.json``) and ``python -m experiments.stickers`` (``stickers.json``).

The verdicts use the phantom claims' rule (``report_sections.compare`` / ``verdict``): a difference counts when
it exceeds the root sum of squares of the two sides' standard deviations over seeds. A smoke run (``--limit``,
one seed or fewer epochs: ``"smoke": true`` in the JSON) gets no verdict at all.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from experiments.report_sections import compare, figure_links, missing, number, pm, verdict

STREAMS = ("image", "lesion")
COMMAND = "python -m train real-ablation"


def _metric(report: dict, variant: str, metric: str, condition: str = "clean", setting: str = "with_metadata") -> dict:
    return report["summary"][variant][condition][setting][metric]


def _focus(report: dict, variant: str, stream: str = "image", condition: str = "clean") -> dict | None:
    entry = report["summary"][variant][condition]["lesion_focus"].get(stream)
    return None if entry is None else entry["mean"]


def _drop(runs: list[dict], variant: str) -> dict | None:
    """Per seed, balanced accuracy clean minus reversed: mean, std, n."""
    drops = [r["test"]["clean"]["with_metadata"]["balanced_accuracy"] - r["test"]["reversed"]["with_metadata"]["balanced_accuracy"]
             for r in runs if r["variant"] == variant]  # fmt: skip
    if not drops:
        return None
    return {"mean": statistics.mean(drops), "std": statistics.stdev(drops) if len(drops) > 1 else 0.0, "n": len(drops)}


ZERO = {"mean": 0.0, "std": 0.0, "n": 2}


def _row(rows: list, claim: str, comparison: str, a: dict | None, b: dict | None) -> None:
    """Add (claim, comparison, difference, noise) when both sides were measured."""
    if a is not None and b is not None:
        rows.append((claim, comparison, *compare(a, b)))


def real_claims_section(report: dict | None, path: Path, stickers: dict | None, stickers_path: Path) -> str:
    """The paper's three claims against the real-image numbers, with the noise rule's verdict for each."""
    text = "## The paper's claims on real images (HAM10000)\n\n"
    if report is None:
        return text + missing(path, COMMAND)
    smoke = report.get("smoke")
    text += ("Rule: a difference counts when it exceeds the noise, the root sum of squares of the two sides' standard "
             f"deviations over seeds ({report['settings']['seeds']}). Test split of the shipped model's lesion-grouped split, "
             f"{report['data']['splits']['test']} images; every variant trained on the same cached frozen stages with the same "
             f"budget (below). Source `{path}`.\n\n")  # fmt: skip
    if smoke:
        text += "**Smoke run (a subset, one seed or fewer epochs): these rows check the machinery; no verdict is given.**\n\n"
    rows = []
    variants = report["summary"]
    pairs_1 = [("lesion", "baseline"), ("full", "metadata"), ("full", "baseline")]
    for metric in ("balanced_accuracy", "macro_auc"):
        for better, worse in pairs_1:
            if better in variants and worse in variants:
                _row(rows, "1. the lesion stream (dual network) improves classification", f"{better} − {worse}, "
                     f"{metric.replace('_', ' ')}", _metric(report, better, metric), _metric(report, worse, metric))
    for metric in ("balanced_accuracy", "macro_auc"):
        for better, worse in (("metadata", "baseline"), ("full", "lesion")):
            if better in variants and worse in variants:
                _row(rows, "2. metadata helps", f"{better} − {worse}, {metric.replace('_', ' ')}",
                     _metric(report, better, metric), _metric(report, worse, metric))
    gain = (report.get("metadata_at_test_time") or {}).get("full")
    _row(rows, "2. metadata helps", "full with − without metadata at test time (same models), balanced accuracy", gain, ZERO)
    if "full" in variants and "concat" in variants:
        _row(rows, "cross-attention beats concatenation", "full − concat, balanced accuracy",
             _metric(report, "full", "balanced_accuracy"), _metric(report, "concat", "balanced_accuracy"))
    if "full" in variants and "baseline" in variants:
        _row(rows, "3. predictions rest on the lesion", "full − baseline, image-stream lesion focus (expert masks)",
             _focus(report, "full"), _focus(report, "baseline"))
    artefacts = report.get("artefacts")
    if artefacts and {"baseline", "full"} <= set(artefacts["summary"]):
        kind, runs = artefacts["artefact"], artefacts["runs"]
        base_drop, full_drop = _drop(runs, "baseline"), _drop(runs, "full")
        _row(rows, f"3. precondition: the baseline learnt the {kind}", "baseline's drop, clean − reversed, balanced accuracy",
             base_drop, ZERO)
        _row(rows, "3. artefacts not learned: the dual model holds when it reverses", "baseline's drop − full's drop",
             base_drop, full_drop)
        _row(rows, "3. the dual model looks at the lesion despite the artefact", "full − baseline, image-stream lesion focus (reversed)",
             _focus(artefacts, "full", condition="reversed"), _focus(artefacts, "baseline", condition="reversed"))
    text += "| claim | comparison | difference | noise | verdict |\n| --- | --- | --- | --- | --- |\n"
    for claim, comparison, delta, noise in rows:
        shown = "no verdict (smoke run)" if smoke else verdict(delta, noise)
        text += f"| {claim} | {comparison} | {delta:+.3f} | {number(noise)} | {shown} |\n"
    if stickers:
        removal = stickers["removal"]["nevi"]
        pasted = stickers["pasting"]["nv"]["nevus_score"]
        text += (f"\nThe natural shortcut (one shipped model, no seeds, so no verdict; source `{stickers_path}`): removing the "
                 f"calibration sticker from {removal['images']} ISIC nevi moves their nevus score by {removal['mean_change']:+.3f} "
                 f"on average; pasting one onto {pasted['images']} sticker-free nevi moves it by {pasted['mean_change']:+.3f}.\n")
    return text + LIMITS


def real_ablation_section(report: dict | None, path: Path, docs: Path) -> str:
    """Each variant's test scores, with and without metadata at test time, and the budget they were trained on."""
    text = "## Real ablation: which parts earn their place on HAM10000\n\n"
    if report is None:
        return text + missing(path, COMMAND)
    budget = report["budget"]
    text += (f"Split `{report['data']['model']}/splits.csv` (HAM10000 rows: {report['data']['splits']['train']} / "
             f"{report['data']['splits']['val']} / {report['data']['splits']['test']}), the shipped segmenter's masks, seeds "
             f"{report['settings']['seeds']}. Budget: frozen {budget['frozen']}; trained {budget['trained']}; "
             f"{budget['epochs']} epochs at batch {budget['batch_size']}, lr {budget['lr']}, {budget['augmentation']}; weighted "
             "loss and metadata dropout (0.5) as the small recipe; best epoch by validation balanced accuracy; prior-shift "
             f"calibration on validation. Mean ± std over seeds; source `{path}`.\n\n"
             "| variant | lesion stream | metadata | fusion | balanced accuracy | … metadata withheld | macro AUC | melanoma "
             "sensitivity at 80 % specificity | ECE | trained parameters |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")  # fmt: skip
    for variant, switches in report["variants"].items():
        with_ = report["summary"][variant]["clean"]["with_metadata"]
        without = report["summary"][variant]["clean"]["without_metadata"]
        fusion = switches.get("fusion", "–") if switches["use_lesion_stream"] else "–"
        text += (f"| {variant} | {'yes' if switches['use_lesion_stream'] else 'no'} | {'yes' if switches['use_metadata'] else 'no'} "
                 f"| {fusion} | {pm(with_['balanced_accuracy'])} | {pm(without['balanced_accuracy'])} | {pm(with_['macro_auc'])} | "
                 f"{pm(with_['melanoma_sensitivity_at_80_specificity'])} | {pm(with_['ece'])} | "
                 f"{budget['trainable_parameters'][variant] / 1e6:.2f} M |\n")  # fmt: skip
    classes = report["classes"]
    text += "\nRecall per class (mean over seeds, with metadata):\n\n| variant | " + " | ".join(classes) + " |\n"
    text += "| --- " * (len(classes) + 1) + "|\n"
    for variant in report["variants"]:
        recall = report["summary"][variant]["clean"]["with_metadata"]["recall"]
        text += f"| {variant} | " + " | ".join(number((recall[c] or {}).get("mean"), 2) for c in classes) + " |\n"
    timing = budget["timing"]
    spent = budget.get("training_and_scoring", {})
    text += (f"\nCost, measured on this run ({budget['threads']} thread(s)): masks {_seconds(timing.get('masks'))}, frozen stages "
             f"on the clean images {_seconds(timing.get('clean_features'))}, on the artefact images "
             f"{_seconds(timing.get('artefact_features'))}, training {_seconds(spent.get('train_time'))} and scoring "
             f"{_seconds(spent.get('score_time'))} for {budget['runs_trained_now']} runs, median epoch "
             f"{number(budget['median_epoch_seconds'], 1)} s.\n")  # fmt: skip
    text += figure_links({"figures": [f for f in report["figures"] if "bars" in f]}, path, docs)
    reused = report.get("runs_reused", 0)
    return text + f"\nCommand: `{report['command']}` ({report['wall_minutes']} minutes" + (
        f"; {reused} runs reused from an earlier call" if reused else "") + ").\n"


def _seconds(entry: dict | None) -> str:
    if not entry:
        return "reused"
    return f"{entry['wall_s'] / 60:.1f} min ({entry['cpu_s'] / 60:.1f} CPU-min)"


def real_focus_section(report: dict | None, path: Path) -> str:
    """Where each variant's Grad-CAM lies against the Tschandl expert masks."""
    text = "## Lesion focus of every variant, against the expert masks\n\n"
    if report is None:
        return text + missing(path, COMMAND)
    text += (f"Share of each stream's Grad-CAM mass inside the Tschandl expert mask, {report['data']['focus_images']} test "
             "images (a fixed random sample), each case's top class, maps made as the app makes them (Grad-CAM; Grad-CAM++ "
             "where it is degenerate) through the trained later stages. Mean ± std over seeds of the per-seed means; "
             "median, quartiles, share under 0.3 and the histogram (ten bins over [0, 1]) pool the seeds. The image stream "
             "sees the whole frame, the lesion stream only the lesion crop (its focus is high by construction: compare it "
             f"with the uniform map's). Source `{path}`.\n\n"
             "| variant | stream | mean | median | quartiles | share under 0.3 | uniform map | histogram |\n"
             "| --- | --- | --- | --- | --- | --- | --- | --- |\n")  # fmt: skip
    for variant in report["variants"]:
        for stream, entry in report["summary"][variant]["clean"]["lesion_focus"].items():
            pooled = entry["pooled"]
            if not pooled.get("images"):
                continue
            text += (f"| {variant} | {stream} | {pm(entry['mean'])} | {number(pooled['median'])} | "
                     f"{number(pooled['q25'], 2)}–{number(pooled['q75'], 2)} | {100 * pooled['share_under_0.3']:.0f} % | "
                     f"{number(entry['uniform_map'])} | {_bars(pooled['histogram'])} |\n")  # fmt: skip
    return text


def _bars(counts: list[int]) -> str:
    """A histogram as a row of block characters (low to high focus)."""
    blocks = " ▁▂▃▄▅▆▇█"
    top = max(counts) or 1
    return "`" + "".join(blocks[round(8 * c / top)] for c in counts) + "`"


def real_artefact_section(report: dict | None, path: Path, docs: Path) -> str:
    """The artefact shortcut: scores and focus with the artefact absent, biased, everywhere and reversed."""
    text = "## A real artefact as a shortcut\n\n"
    artefacts = (report or {}).get("artefacts")
    if artefacts is None:
        return text + missing(path, COMMAND)
    kind, rate = artefacts["artefact"], artefacts["rate"]
    test = artefacts["test"]
    text += (f"Real {kind} templates ({artefacts['templates']['count']} instances; {artefacts['templates']['citation']}) "
             f"pasted into {artefacts['train_with_artefact']} of the {artefacts['train_melanomas']} training melanomas "
             f"(rate {rate:.0%}) and into no other training image; placed around the expert mask as the templates' README "
             "describes, the lesion stream's mask made by the shipped segmenter on the modified image (as the app would). "
             f"The same test images ({test['melanomas']} melanomas, {test['others']} others) scored *clean*, *biased* (the "
             f"training bias: {test['biased_melanomas_with_artefact']} melanomas carry it), with the artefact on *all* of them, "
             f"and *reversed* (on every other-class image, on no melanoma). Mean ± std over seeds; source `{path}` → "
             "`artefacts`.\n\n"
             "| variant | balanced accuracy clean | biased | all | reversed | P(mel), other classes: clean → all | P(mel), "
             "melanomas: clean → biased | image-stream focus clean → all |\n"
             "| --- | --- | --- | --- | --- | --- | --- | --- |\n")  # fmt: skip
    for variant in artefacts["variants"]:
        m = artefacts["summary"][variant]
        ba = {c: pm(m[c]["with_metadata"]["balanced_accuracy"]) for c in artefacts["conditions"]}
        others = [m[c]["with_metadata"]["melanoma_score"]["others"] for c in ("clean", "all")]
        melanomas = [m[c]["with_metadata"]["melanoma_score"]["melanomas"] for c in ("clean", "biased")]
        focus = [m[c]["lesion_focus"]["image"]["mean"] for c in ("clean", "all")]
        text += (f"| {variant} | {ba['clean']} | {ba['biased']} | {ba['all']} | {ba['reversed']} | {pm(others[0])} → "
                 f"{pm(others[1])} | {pm(melanomas[0])} → {pm(melanomas[1])} | {pm(focus[0], 2)} → {pm(focus[1], 2)} |\n")  # fmt: skip
    if report.get("gallery"):
        text += (f"\nThe CAM gallery (baseline vs. full, clean vs. with the {kind}, expert-mask "
                 f"outlines) is written by the command to `{report['gallery']}`: not committed, as it shows HAM10000 images "
                 "(CC BY-NC 4.0) and the repository holds only CC0 images.\n")
    return text


def stickers_section(report: dict | None, path: Path) -> str:
    """The calibration stickers of the ISIC 2016/2017 nevi: how many, and what they do to the shipped model."""
    text = "## The natural shortcut: calibration stickers on ISIC nevi\n\n"
    if report is None:
        return text + missing(path, "python -m experiments.stickers")
    detector = report["detector"]
    text += (f"{report['data']}. Detector (`experiments/stickers.py`): blobs of sticker hue (OpenCV hue "
             f"{detector['foreign_hue_opencv'][0]}–{detector['foreign_hue_opencv'][1]}, saturation ≥ {detector['min_saturation']}; "
             f"or saturation ≥ {detector['vivid_saturation']}), {100 * detector['area_share'][0]:.1f}–{100 * detector['area_share'][1]:.0f} % "
             f"of the image, solidity ≥ {detector['min_solidity']}, near the border. Every detection is on the contact sheet "
             f"`{detector['contact_sheet']}` (made by the command, not committed: ISIC images) for a human check; the counts are "
             f"the detector's, false positives included. Source `{path}`.\n\n"
             "| diagnosis | images | with a detected sticker |\n| --- | --- | --- |\n")  # fmt: skip
    for label, row in report["counts"].items():
        text += f"| `{label}` | {row['images']} | {row['with_sticker']} ({100 * row['with_sticker'] / max(row['images'], 1):.1f} %) |\n"
    removal, pasting = report["removal"], report["pasting"]
    text += (f"\nShipped model `{report['model']}` (no metadata), through the pipeline:\n\n"
             "| change | images | nevus score before → after | mean change | share that rose | top class changed |\n"
             "| --- | --- | --- | --- | --- | --- |\n")
    nevi = removal["nevi"]
    if nevi.get("images"):
        text += (f"| sticker removed from nevi ({removal['method']}) | {nevi['images']} | {number(nevi['before'])} → "
                 f"{number(nevi['after'])} | {nevi['mean_change']:+.3f} | {100 * nevi['share_rose']:.0f} % | "
                 f"{100 * removal['top_class_changed']:.0f} % |\n")  # fmt: skip
    for label in ("nv", "mel"):
        row = pasting.get(label) or {}
        score = row.get("nevus_score", {})
        if score.get("images"):
            text += (f"| sticker pasted onto sticker-free `{label}` | {score['images']} | {number(score['before'])} → "
                     f"{number(score['after'])} | {score['mean_change']:+.3f} | {100 * score['share_rose']:.0f} % | "
                     f"{100 * row['top_class_changed']:.0f} % |\n")  # fmt: skip
    return text + f"\nDonors: {pasting['donors']} stickers ({pasting['donor_rule']}). Command: `{report['command']}` ({report['seconds'] / 60:.1f} min).\n"


LIMITS = """
What these numbers do not show:

- The budget is not the paper's: its DenseNet201s were fine-tuned end to end at 224 px; here two EfficientNet-Lite0s
  at 160 px keep their early stages frozen at ImageNet weights and train only the last stage and everything after it,
  for a few epochs, so that 5 variants × 3 seeds fit a 2-core CPU. A variant that needs its early features to adapt
  (the lesion stream, on blanked-out crops) may be held back more than the baseline; the ranking could change with
  full fine-tuning.
- One split, one dataset (HAM10000: dermoscopy from two sites, mostly fair skin), three seeds: the noise is the seeds'
  spread on one test split, not the spread over datasets or clinics.
- Lesion focus measures where Grad-CAM puts its mass, not what the prediction causally depends on; the lesion
  stream's focus is high partly by construction (it sees a crop with the skin blanked).
- The artefact shortcut is planted: real templates, pasted by rule into a stated share of one class. It shows
  whether each variant *can* pick up such a cue and how far it moves, not how often real datasets carry it.
- The sticker count is a detector's on the 2016/2017 archive images, checked only by eye on its contact sheet; the
  sticker effect is measured on one model that never saw a sticker in training.
"""
