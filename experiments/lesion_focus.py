"""Where the shipped model looks, against the experts' lesion masks: lesion focus on HAM10000's test split.

    python -m experiments.lesion_focus                 # → docs/results/lesion_focus.json and a table

Lesion focus is the share of a heatmap's mass inside a lesion mask (``dermfuse.measure.lesion_focus``).
The app measures it against the segmenter's own mask; here the mask is the expert's (Tschandl et al.'s
HAM10000 lesion masks), so a segmenter that outlines the wrong thing cannot make the model look good.
The images are the model's HAM10000 test split (``splits.csv``: never trained or calibrated on), with
their age, sex and site, through ``DermFusePipeline`` as the app runs them (segmenter mask, lesion
image, Grad-CAM with its fallback). Per stream: mean and median focus, the share of images under 0.3,
and the focus a uniform map would get (the lesion's share of what the stream saw: the whole image for
the image stream, the part of the lesion image's box inside the frame for the lesion stream).

The same images, the same class and the same encoder maps are also explained by every method in
``dermfuse.explain.CAM_METHODS``, so the methods compare on equal terms; how often each one's map is
degenerate is counted. The fallback for a degenerate Grad-CAM map is chosen on the *validation* split
(``--val-images`` of it): the candidate with the highest mean focus over both streams among those
degenerate on under 1 % of images. Test numbers are reported, not chosen on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from dermfuse.data.metadata import encode_normalized
from dermfuse.data.transforms import view_box
from dermfuse.explain import CAM_METHODS, FALLBACK_METHOD, PRIMARY_METHOD, head_cams
from dermfuse.lesion import paste_into_frame
from dermfuse.measure import lesion_focus
from dermfuse.pipeline import Case, DermFusePipeline

ROOT = Path(__file__).resolve().parents[1]
STREAMS = ("image", "lesion")
UNDER = 0.3  # "mostly off the lesion": under 30 % of the heat on it
MAX_DEGENERATE = 0.01  # a fallback must itself be usable on (almost) every image


def expert_mask(data: Path, image_id: str) -> np.ndarray:
    path = data / "HAM10000" / "HAM10000_segmentations_lesion_tschandl" / f"{image_id}_segmentation.png"
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"expert mask {path} is missing: point --data at the shared data folder")
    return mask > 127


def uniform_focus(expert: np.ndarray, box: list[int] | None) -> float:
    """The focus of a map that is the same everywhere the stream looked (its chance level)."""
    if box is None:
        return float(expert.mean())
    x0, y0, x1, y1 = (max(v, 0) for v in box)
    return float(expert[y0:y1, x0:x1].mean())


def method_maps(pipeline: DermFusePipeline, results: list) -> dict[str, tuple[dict, dict]]:
    """Every CAM method on the batch the pipeline just diagnosed: same images, lesion images, metadata and
    class (each case's top class), in the image frame. Method → ({stream: [maps]}, {stream: [flaw or None]})."""
    images, fields = pipeline.classifier_view([Image.fromarray(r.image) for r in results])
    lesions = [Image.fromarray(r.lesion_image) for r in results]
    image_maps, lesion_maps = pipeline.encode(images, lesions, fields)
    encoded = encode_normalized(*([r.metadata[k] for r in results] for k in ("age", "sex", "site")))
    metadata = tuple(encoded[k].to(pipeline.device) for k in ("age", "sex", "site"))
    targets = [r.top_index for r in results]
    out = {}
    for method in CAM_METHODS:
        cams, flaws, _ = head_cams(pipeline.model.classifier, image_maps, lesion_maps, metadata,
                                   pipeline.model.image_size, targets, method, pipeline.model.flip_views)
        seen = [{"lesion": r.lesion_box, "image": view_box(r.mask.shape[1], r.mask.shape[0], pipeline.model.image_framing,
                                                           fields[i])} for i, r in enumerate(results)]
        frames = {s: [paste_into_frame(cams[s][i], seen[i][s], r.mask.shape) for i, r in enumerate(results)]
                  for s in STREAMS}
        out[method] = (frames, flaws)
    return out


def measure_split(pipeline: DermFusePipeline, rows: pd.DataFrame, data: Path, batch_size: int, label: str) -> pd.DataFrame:
    """One row per image: the shipped maps' focus against the expert and the predicted mask, the method that made
    them, the chance level, and every method's focus and flaw."""
    records = []
    folder = data / "HAM10000" / "HAM10000_images"
    for start in tqdm(range(0, len(rows), batch_size), desc=label, unit="batch"):
        batch = rows.iloc[start:start + batch_size]
        cases = [Case(folder / f"{r.image_id}.jpg", r.age, r.sex, r.site, image_id=r.image_id) for r in batch.itertuples()]
        results = pipeline.predict(cases, explain=True)
        methods = method_maps(pipeline, results)
        for i, (case, result) in enumerate(zip(cases, results)):
            expert = expert_mask(data, case.image_id)
            record = {"image_id": case.image_id, "label": batch.iloc[i]["label"], "top_class": result.top_class,
                      "expert_area": float(expert.mean()), "predicted_area": float(result.mask.mean())}
            for s in STREAMS:
                heat = (result.heatmaps or {}).get(s)
                record[f"{s}_method"] = (result.heatmap_methods or {}).get(s)
                record[f"{s}_focus"] = None if heat is None else lesion_focus(heat, expert)
                record[f"{s}_focus_predicted_mask"] = (result.lesion_focus or {}).get(s)
                record[f"{s}_uniform"] = uniform_focus(expert, result.lesion_box if s == "lesion" else None)
                for method, (frames, flaws) in methods.items():
                    flaw = flaws[s][i]
                    record[f"{s}_{method}_flaw"] = flaw
                    record[f"{s}_{method}_focus"] = None if flaw else lesion_focus(frames[s][i], expert)
            records.append(record)
    return pd.DataFrame(records)


def focus_summary(values: pd.Series) -> dict:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return {"images": 0}
    return {"images": int(len(values)), "mean": float(values.mean()), "median": float(values.median()),
            f"share_under_{UNDER}": float((values < UNDER).mean())}


def method_summary(table: pd.DataFrame) -> dict:
    """Method → stream → focus summary and the share of images where that method's map is degenerate."""
    return {method: {s: {**focus_summary(table[f"{s}_{method}_focus"]),
                         "degenerate_share": float(table[f"{s}_{method}_flaw"].notna().mean())} for s in STREAMS}
            for method in CAM_METHODS}


def choose_fallback(summary: dict) -> tuple[str, dict]:
    """The candidate (not the primary method) with the highest mean focus over both streams, among those
    degenerate on under ``MAX_DEGENERATE`` of images; with each candidate's score."""
    scores = {}
    for method, streams in summary.items():
        if method == PRIMARY_METHOD or any(streams[s]["degenerate_share"] >= MAX_DEGENERATE for s in STREAMS):
            continue
        scores[method] = float(np.mean([streams[s]["mean"] for s in STREAMS]))
    return max(scores, key=scores.get), scores


def summarise(test: pd.DataFrame, val: pd.DataFrame, model: str, seconds: float) -> dict:
    degenerate = test[test[[f"{s}_{PRIMARY_METHOD}_flaw" for s in STREAMS]].notna().any(axis=1)]
    validation = method_summary(val)
    chosen, scores = choose_fallback(validation)
    return {
        "model": model,
        "data": "HAM10000 test split of the model's splits.csv (source ham10000, split test)",
        "expert_masks": "HAM10000_segmentations_lesion_tschandl (Tschandl et al.)",
        "images": int(len(test)),
        "focus": "share of the heatmap's mass inside the expert mask (the part of the map inside the image frame)",
        "shipped": {s: {**focus_summary(test[f"{s}_focus"]),
                        "methods": {k: int(v) for k, v in test[f"{s}_method"].value_counts().items()},
                        "no_map": int(test[f"{s}_method"].isna().sum()),
                        "against_the_predicted_mask": focus_summary(test[f"{s}_focus_predicted_mask"]),
                        "uniform_map": focus_summary(test[f"{s}_uniform"])} for s in STREAMS},
        "methods_on_test": method_summary(test),
        "methods_where_grad_cam_is_degenerate_on_test": {
            "images": int(len(degenerate)),
            **({m: {s: focus_summary(degenerate[f"{s}_{m}_focus"]) for s in STREAMS} for m in CAM_METHODS}
               if len(degenerate) else {}),
        },
        "fallback": {"chosen_on_validation": chosen, "in_use": FALLBACK_METHOD, "validation_images": int(len(val)),
                     "mean_focus_over_both_streams": scores,
                     "rule": f"highest mean focus over both streams among candidates degenerate on < {MAX_DEGENERATE:.0%} of "
                             "validation images"},
        "validation": validation,
        "seconds": round(seconds, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
    }


def print_table(report: dict) -> None:
    print(f"\nLesion focus against the expert masks, {report['model']}, {report['images']} HAM10000 test images")
    print(f"{'stream':<8} {'mean':>6} {'median':>7} {'< 0.3':>7} {'uniform map':>12} {'vs. predicted mask':>19}  methods")
    for s, row in report["shipped"].items():
        print(f"{s:<8} {row['mean']:>6.3f} {row['median']:>7.3f} {row[f'share_under_{UNDER}']:>7.1%} "
              f"{row['uniform_map']['mean']:>12.3f} {row['against_the_predicted_mask']['mean']:>19.3f}  "
              f"{row['methods']}, no map {row['no_map']}")
    print("\nEvery method on the same test images (mean focus / share < 0.3 / degenerate maps)")
    for method, streams in report["methods_on_test"].items():
        cells = "   ".join(f"{s}: {v['mean']:.3f} / {v[f'share_under_{UNDER}']:.1%} / {v['degenerate_share']:.1%}"
                           for s, v in streams.items())
        print(f"{method:<11} {cells}")
    fallback = report["fallback"]
    print(f"\nFallback chosen on {fallback['validation_images']} validation images: {fallback['chosen_on_validation']} "
          f"(in use: {fallback['in_use']}); scores {fallback['mean_focus_over_both_streams']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "dermfuse-small-ham10000"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", default=str(ROOT / "docs" / "results" / "lesion_focus.json"))
    parser.add_argument("--val-images", type=int, default=500, help="validation images to choose the fallback on")
    parser.add_argument("--limit", type=int, help="only the first N test images (a quick check)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not (data / "HAM10000" / "HAM10000_segmentations_lesion_tschandl").is_dir():
        raise SystemExit(f"HAM10000 images and expert masks not found under {data}: pass --data")
    splits = pd.read_csv(Path(args.model) / "splits.csv")
    ham = splits[splits["source"] == "ham10000"].sort_values("image_id")
    test = ham[ham["split"] == "test"].head(args.limit) if args.limit else ham[ham["split"] == "test"]
    val = ham[ham["split"] == "val"].head(args.val_images)
    started = time.perf_counter()
    pipeline = DermFusePipeline.from_pretrained(args.model)
    val_table = measure_split(pipeline, val, data, args.batch_size, "validation")
    test_table = measure_split(pipeline, test, data, args.batch_size, "test")
    report = summarise(test_table, val_table, Path(args.model).name, time.perf_counter() - started)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1, allow_nan=False))
    print_table(report)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
