"""The natural shortcut: coloured calibration stickers on ISIC 2018 Task 1 nevi, and what they do to the shipped model.

    python -m experiments.stickers          # → docs/results/stickers.json, runs/stickers/contact_sheet.png

Some ISIC 2016/2017 nevi carry round coloured calibration stickers (Bissoto et al., ISIC Skin Image Analysis
Workshop 2019): a cue a model can learn for "nevus". Here, on the 2,175 ISIC 2018 Task 1 images (diagnoses
from ``ISIC_2019_Training_GroundTruth.csv``):

1. **Count** the images carrying a sticker with a stated detector (:func:`detect_stickers`): pixels of a hue
   no skin or lesion has (yellow through green and cyan to blue; OpenCV hue 22–125, saturation ≥ 100, value
   ≥ 70), or of a saturation skin never reaches (≥ 170, value ≥ 120: orange and red sticker rings); connected
   blobs of 0.5–40 % of the image, convex (solidity ≥ 0.85: a disc, even cut by the frame; ink strokes are
   not) and near the border (centroid within a quarter of the short side of an edge). Every detection goes
   on a contact sheet (``runs/stickers/contact_sheet.png``, outlined) for a human to check: the count is the
   detector's, false positives included.
2. **Remove** each detected nevus's sticker (OpenCV Telea inpainting of the blob, dilated 3 px) and compare
   the shipped model's nevus score before and after, through the pipeline as the app runs it.
3. **Paste** a clear sticker (a detection of ≥ 5 % of its image, its pixels copied where the blob is, at the
   same place relative to the frame) onto sticker-free nevi and melanomas and compare their scores.

The shipped model's classifier never saw these images (it learned from HAM10000 only); no metadata is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from dermfuse.data import load_image
from dermfuse.pipeline import Case, DermFusePipeline
from train.checkpoint import write_json

ROOT = Path(__file__).resolve().parents[1]
FOREIGN_HUE = (22, 125)  # OpenCV hue (0–179): yellow … green … cyan … blue; skin and lesions lie outside
MIN_SATURATION, MIN_VALUE = 100, 70
VIVID_SATURATION, VIVID_VALUE = 170, 120  # saturation no skin reaches: orange and red sticker rings
AREA = (0.005, 0.40)  # blob size as a share of the image
MIN_SOLIDITY = 0.85
BORDER_BAND = 0.25  # centroid within this share of the short side of an edge
DONOR_AREA = 0.05  # a detection this large is a sticker beyond doubt: used for pasting
PASTE_TARGETS = 100  # sticker-free nevi and melanomas each
SHEET_THUMB = (128, 96)


def detect_stickers(rgb: np.ndarray) -> np.ndarray:
    """The calibration-sticker pixels of an RGB image (H, W, 3 uint8) as a bool mask (empty: no sticker)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue, saturation, value = (hsv[..., i].astype(np.int32) for i in range(3))
    foreign = (hue >= FOREIGN_HUE[0]) & (hue <= FOREIGN_HUE[1]) & (saturation >= MIN_SATURATION) & (value >= MIN_VALUE)
    vivid = (saturation >= VIVID_SATURATION) & (value >= VIVID_VALUE)
    candidate = cv2.morphologyEx((foreign | vivid).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    height, width = candidate.shape
    found = np.zeros((height, width), bool)
    for k in range(1, count):
        area = stats[k, cv2.CC_STAT_AREA]
        if not AREA[0] <= area / (height * width) <= AREA[1]:
            continue
        blob = labels == k
        if not foreign[blob].any():  # vivid alone (an orange lesion?) is not enough: some sticker hue must be there
            continue
        contours, _ = cv2.findContours(blob.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        solidity = area / max(cv2.contourArea(cv2.convexHull(max(contours, key=cv2.contourArea))), 1.0)
        cx, cy = centroids[k]
        if solidity >= MIN_SOLIDITY and min(cx, cy, width - cx, height - cy) < BORDER_BAND * min(height, width):
            found |= blob
    return found


def remove_sticker(rgb: np.ndarray, sticker: np.ndarray) -> np.ndarray:
    """The image with the sticker inpainted (Telea), the blob dilated by 3 px to take its rim too."""
    grown = cv2.dilate(sticker.astype(np.uint8), np.ones((7, 7), np.uint8))
    return cv2.inpaint(np.ascontiguousarray(rgb), grown, 5, cv2.INPAINT_TELEA)


def paste_sticker(target: np.ndarray, donor: np.ndarray, sticker: np.ndarray) -> np.ndarray:
    """``donor``'s sticker pixels copied onto ``target`` at the same place relative to the frame (resized to it)."""
    height, width = target.shape[:2]
    donor = cv2.resize(donor, (width, height), interpolation=cv2.INTER_AREA)
    where = cv2.resize(sticker.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = target.copy()
    out[where] = donor[where]
    return out


def task1_table(data: Path) -> pd.DataFrame:
    """ISIC 2018 Task 1 images with their diagnosis (nv / mel / bkl) from the ISIC 2019 ground truth."""
    folder = data / "ISIC2018_Task1" / "ISIC2018_Task1-2_Training_Input"
    truth = pd.read_csv(data / "ISIC_2019_Training_GroundTruth.csv")
    truth["image"] = truth["image"].str.replace("_downsampled", "", regex=False)
    diagnosis = truth.set_index("image").drop(columns=["UNK"]).idxmax(axis=1).str.lower()
    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no ISIC 2018 Task 1 images under {folder}: pass --data")
    table = pd.DataFrame({"image_id": [p.stem for p in paths], "image_path": [str(p) for p in paths]})
    table["label"] = table["image_id"].map(diagnosis)
    return table.dropna(subset=["label"]).reset_index(drop=True)


def scores(pipeline: DermFusePipeline, images: list[np.ndarray], batch: int = 16) -> np.ndarray:
    """Calibrated probabilities (N, K) of the shipped model, no metadata, through the pipeline."""
    out = []
    for start in range(0, len(images), batch):
        out += [r.probabilities for r in pipeline.predict([Case(image) for image in images[start:start + batch]])]
    return np.array(out)


def shift(before: np.ndarray, after: np.ndarray, k: int) -> dict:
    """How class ``k``'s score moved: mean before / after, mean and median change, share that rose."""
    change = after[:, k] - before[:, k]
    return {"images": int(len(change)), "before": float(before[:, k].mean()), "after": float(after[:, k].mean()),
            "mean_change": float(change.mean()), "median_change": float(np.median(change)),
            "share_rose": float((change > 0).mean())} if len(change) else {"images": 0}  # fmt: skip


def contact_sheet(images: list[np.ndarray], masks: list[np.ndarray], captions: list[str], path: Path, columns: int = 16) -> Path:
    """Every detection, its blob outlined in magenta, captioned, as one PNG for a human check."""
    tiles = []
    for image, mask, caption in zip(images, masks, captions):
        shown = image.copy()
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(shown, contours, -1, (255, 0, 255), 2)
        tile = cv2.resize(shown, SHEET_THUMB, interpolation=cv2.INTER_AREA)
        cv2.putText(tile, caption, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    rows = max(1, -(-len(tiles) // columns))
    sheet = np.zeros((rows * SHEET_THUMB[1], columns * SHEET_THUMB[0], 3), np.uint8)
    for i, tile in enumerate(tiles):
        y, x = divmod(i, columns)
        sheet[y * SHEET_THUMB[1]:(y + 1) * SHEET_THUMB[1], x * SHEET_THUMB[0]:(x + 1) * SHEET_THUMB[0]] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path


def run_stickers(model: str, data: Path, json_path: Path, sheet_path: Path, limit: int = 0) -> dict:
    """Count, remove and paste (module docstring); write ``json_path`` and the contact sheet; return the report."""
    started = time.monotonic()
    table = task1_table(data)
    if limit:
        table = table.head(limit)
    pixels = [np.asarray(load_image(p)) for p in table["image_path"]]
    stickers = [detect_stickers(image) for image in pixels]
    table["sticker_area"] = [float(m.mean()) for m in stickers]
    found = table["sticker_area"] > 0
    counts = {label: {"images": int((table["label"] == label).sum()), "with_sticker": int((found & (table["label"] == label)).sum())}
              for label in sorted(table["label"].unique())}  # fmt: skip
    detected = table.index[found].tolist()
    contact_sheet([pixels[i] for i in detected], [stickers[i] for i in detected],
                  [f"{table.at[i, 'label']} {table.at[i, 'image_id'][5:]}" for i in detected], sheet_path)

    pipeline = DermFusePipeline.from_pretrained(model)
    classes = list(pipeline.model.classes)
    nv, mel = classes.index("nv"), classes.index("mel")
    nevi = [i for i in detected if table.at[i, "label"] == "nv"]
    removed = [remove_sticker(pixels[i], stickers[i]) for i in nevi]
    before_removal, after_removal = scores(pipeline, [pixels[i] for i in nevi]), scores(pipeline, removed)

    donors = [i for i in detected if table.at[i, "sticker_area"] >= DONOR_AREA]
    rng = np.random.default_rng(0)
    pasted_report = {}
    for label in ("nv", "mel"):
        free = table.index[~found & (table["label"] == label)].to_numpy()
        targets = np.sort(rng.permutation(free)[:PASTE_TARGETS]) if len(free) else free
        chosen = rng.integers(len(donors), size=len(targets)) if donors else []
        pasted = [paste_sticker(pixels[t], pixels[donors[d]], stickers[donors[d]]) for t, d in zip(targets, chosen)]
        before, after = scores(pipeline, [pixels[t] for t in targets]), scores(pipeline, pasted)
        pasted_report[label] = {"nevus_score": shift(before, after, nv), "melanoma_score": shift(before, after, mel),
                                "top_class_changed": float((before.argmax(1) != after.argmax(1)).mean()) if len(targets) else None}
    report = {
        "data": "ISIC 2018 Task 1 training images (2016/2017 archive), diagnoses from ISIC_2019_Training_GroundTruth.csv",
        "model": Path(model).name,
        "detector": {"foreign_hue_opencv": list(FOREIGN_HUE), "min_saturation": MIN_SATURATION, "min_value": MIN_VALUE,
                     "vivid_saturation": VIVID_SATURATION, "area_share": list(AREA), "min_solidity": MIN_SOLIDITY,
                     "border_band": BORDER_BAND, "contact_sheet": str(sheet_path)},
        "counts": counts,
        "removal": {"method": "cv2.inpaint Telea, radius 5, blob dilated 3 px",
                    "nevi": shift(before_removal, after_removal, nv) if nevi else {"images": 0},
                    "top_class_changed": float((before_removal.argmax(1) != after_removal.argmax(1)).mean()) if nevi else None},
        "pasting": {"donors": len(donors), "donor_rule": f"detections of at least {DONOR_AREA:.0%} of their image",
                    "targets_per_class": PASTE_TARGETS, **pasted_report},
        "seconds": round(time.monotonic() - started, 1),
        "command": "python -m experiments.stickers" + (f" --limit {limit}" if limit else ""),
    }  # fmt: skip
    write_json(json_path, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "dermfuse-small-ham10000"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", default="docs/results/stickers.json")
    parser.add_argument("--sheet", default="runs/stickers/contact_sheet.png", help="every detection, for a human check")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (a smoke run)")
    args = parser.parse_args(argv)
    report = run_stickers(args.model, Path(args.data), Path(args.json), Path(args.sheet), args.limit)
    print(json.dumps({k: report[k] for k in ("counts", "removal", "pasting")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
