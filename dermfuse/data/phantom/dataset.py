"""Write phantoms to disk in the HAM10000 layout, and draw a contact sheet of them.

Layout (what the HAM10000 reader reads)::

    out_dir/HAM10000_metadata.csv                      lesion_id,image_id,dx,dx_type,age,sex,localization
    out_dir/HAM10000_images/PHANTOM_0000001.jpg        JPEG quality 95
    out_dir/HAM10000_segmentations_lesion_tschandl/PHANTOM_0000001_segmentation.png   one channel, 0/255
    out_dir/phantom_config.json                        how it was generated
    out_dir/phantom_truth.csv                          per image: seed, skin tone, criteria, nuisances, ink

Every file is written to a temporary name and renamed, and the metadata CSV is written last, so a
killed run never leaves a CSV naming missing images. Image i is ``generate_phantom(label_i,
image_seed(seed, i))``, so the output does not depend on the number of workers.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dermfuse import vocab
from dermfuse.data.phantom.generator import Phantom, Shortcut, generate_phantom
from dermfuse.data.phantom.metadata import class_frequencies

PHANTOM_VERSION = "1.0"
METADATA_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
TRUTH_COLUMNS = ("image_id", "seed", "skin_tone", "fitzpatrick", "area_fraction", "shortcut_ink", "criteria", "nuisances")
IMAGES_DIR = "HAM10000_images"
MASKS_DIR = "HAM10000_segmentations_lesion_tschandl"


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a dataset generated with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def class_counts(n: int, class_weights: dict[str, float] | str | None = None) -> dict[str, int]:
    """Split ``n`` images over the classes: balanced (None), HAM10000's prior (``"ham10000"``), or
    proportional to a ``{class: weight}`` dict (largest-remainder rounding, sums to ``n``)."""
    classes = vocab.HAM10000_CLASSES
    if class_weights is None:
        weights = np.ones(len(classes))
    elif class_weights == "ham10000":
        weights = np.array([class_frequencies()[c] for c in classes])
    elif isinstance(class_weights, dict):
        unknown = set(class_weights) - set(classes)
        if unknown:
            raise ValueError(f"class_weights has unknown classes {sorted(unknown)}: expected {', '.join(classes)}")
        weights = np.array([float(class_weights.get(c, 0.0)) for c in classes])
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("class_weights must be non-negative with a positive sum")
    else:
        raise ValueError(f"class_weights {class_weights!r}: give None (balanced), 'ham10000' or a dict class → weight")
    exact = n * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    return dict(zip(classes, counts.tolist()))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _encode(ext: str, array: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(ext, array, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {ext} file")
    return buffer.tobytes()


def _render(job: tuple) -> dict:
    """Generate and write image ``index``; return its metadata and truth rows (runs in workers)."""
    out_dir, index, label, seed, size, difficulty, shortcut = job
    image_id, lesion_id = f"PHANTOM_{index + 1:07d}", f"PH_{index + 1:07d}"
    p = generate_phantom(label, seed, size=size, difficulty=difficulty, shortcut=shortcut)
    jpeg = _encode(".jpg", cv2.cvtColor(p.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    _write_atomic(Path(out_dir) / IMAGES_DIR / f"{image_id}.jpg", jpeg)
    png = _encode(".png", p.mask.astype(np.uint8) * 255, [])
    _write_atomic(Path(out_dir) / MASKS_DIR / f"{image_id}_segmentation.png", png)
    row = {"lesion_id": lesion_id, "image_id": image_id, "dx": label, "dx_type": "phantom",
           "age": "" if p.age is None else f"{p.age:.1f}", "sex": p.sex, "localization": p.localization}  # fmt: skip
    truth = {"image_id": image_id, "seed": seed, **{k: p.meta[k] for k in TRUTH_COLUMNS[2:6]},
             "criteria": ";".join(p.meta["criteria"]),
             "nuisances": ";".join(k for k, v in p.meta["nuisances"].items() if v and k != "jpeg_quality")}  # fmt: skip
    return {"row": row, "truth": truth}


def _csv_bytes(columns, rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def generate_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: int = 256,
    difficulty: float = 0.5,
    class_weights: dict[str, float] | str | None = None,
    shortcut: Shortcut | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate ``n`` phantoms into ``out_dir`` in the HAM10000 layout; return the metadata CSV path.

    Labels are split by ``class_weights`` (see :func:`class_counts`) and shuffled with ``seed``.
    An existing dataset is replaced only with ``overwrite=True`` (its CSV is removed first).
    """
    if n < 1:
        raise ValueError(f"n={n}: generate at least one image")
    out = Path(out_dir)
    csv_path = out / "HAM10000_metadata.csv"
    if csv_path.exists():
        if not overwrite:
            raise FileExistsError(f"{csv_path} exists: pass overwrite=True (--overwrite) or choose another folder")
        csv_path.unlink()
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (out / MASKS_DIR).mkdir(parents=True, exist_ok=True)

    counts = class_counts(n, class_weights)
    labels = np.repeat(list(counts), list(counts.values()))
    np.random.default_rng(np.random.SeedSequence([seed, n])).shuffle(labels)
    jobs = [(str(out), i, str(labels[i]), image_seed(seed, i), size, difficulty, shortcut) for i in range(n)]
    bar = dict(total=n, desc="phantoms", unit="img", disable=not progress)
    if workers > 1:
        with get_context("spawn").Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            results = list(tqdm(pool.imap(_render, jobs, chunksize=8), **bar))
    else:
        results = [_render(job) for job in tqdm(jobs, **bar)]

    config = {
        "generator": "dermfuse.data.phantom",
        "version": PHANTOM_VERSION,
        "n": n,
        "seed": seed,
        "size": size,
        "difficulty": difficulty,
        "class_weights": class_weights,
        "class_counts": counts,
        "shortcut": None if shortcut is None else asdict(shortcut),
    }
    _write_atomic(out / "phantom_config.json", json.dumps(config, indent=2).encode())
    _write_atomic(out / "phantom_truth.csv", _csv_bytes(TRUTH_COLUMNS, [r["truth"] for r in results]))
    _write_atomic(csv_path, _csv_bytes(METADATA_COLUMNS, [r["row"] for r in results]))
    return csv_path


def _tile(p: Phantom) -> np.ndarray:
    """The phantom (BGR) with its mask outlined in green."""
    tile = cv2.cvtColor(p.image, cv2.COLOR_RGB2BGR)
    contours, _ = cv2.findContours(p.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(tile, contours, -1, (0, 255, 0), 1, cv2.LINE_AA)
    return tile


def contact_sheet(
    path: str | Path,
    per_class: int = 6,
    seed: int = 0,
    size: int = 160,
    difficulty: float | None = 0.5,
    shortcut: Shortcut | None = None,
) -> np.ndarray:
    """Write a PNG grid, one labelled row per class, masks outlined in green; return it (BGR).

    ``difficulty=None`` ramps it across the columns from 0 (prototypical, left) to 1 (right), with
    the value written above each column.
    """
    if per_class < 1:
        raise ValueError(f"per_class={per_class}: show at least one phantom per class")
    label_width, gap, header = 90, 4, 28
    ramp = np.linspace(0.0, 1.0, per_class) if per_class > 1 else np.zeros(1)
    column_difficulty = ramp if difficulty is None else np.full(per_class, difficulty)
    width = label_width + per_class * (size + gap)
    title = np.full((header, width, 3), 255, np.uint8)
    for j, d in enumerate(column_difficulty):
        cv2.putText(title, f"difficulty {d:.1f}", (label_width + j * (size + gap) + 4, 20), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    rows = [title]
    for c, label in enumerate(vocab.HAM10000_CLASSES):
        row = np.full((size + gap, width, 3), 255, np.uint8)
        cv2.putText(row, label, (8, size // 2 + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
        for j, d in enumerate(column_difficulty):
            p = generate_phantom(label, image_seed(seed, c * 1000 + j), size, float(d), shortcut)
            x = label_width + j * (size + gap)
            row[:size, x : x + size] = _tile(p)
        rows.append(row)
    sheet = np.vstack(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise RuntimeError(f"could not write {path}")
    return sheet
