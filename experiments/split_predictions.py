"""One pass of the pipeline over a model's split (or a folder of images), kept in ``runs/`` for the steps that read it.

The operating points (``python -m train operating-points``: validation and test splits) and the
skin-tone report (``python -m train skin-tone``: test split, CC0 originals) read the same
predictions, so each image goes through the pipeline once per model. A table holds, per image, the
calibrated probabilities with the patient data of the table (``p_<class>``) and without any
(``q_<class>``), whether the image passed the assessability gate, and the skin tone the pipeline
measured around its predicted lesion. The cache is keyed by the model's weights and calibration
and by the skin-tone code (``dermfuse/skin_tone.py``), so a new model or a changed measurement is
never read from a stale table.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dermfuse import skin_tone
from dermfuse.data import read_dataset, read_manifest
from dermfuse.models.dermfuse import WEIGHTS_FILE, file_digest
from dermfuse.pipeline import Case, DermFusePipeline
from dermfuse.predict import predict_all
from dermfuse.sources import DEFAULT_MODEL
from experiments.isic_rows import SHARED

CACHE = Path("runs/predictions")
FOLDERS = {"ham10000": "HAM10000", "isic2018_task1": "ISIC2018_Task1", "isic_cc0": "isic_cc0"}
TONE_COLUMNS = ("ita", "band", "colour_cast", "lightness", "yellowness", "skin_share", "reason")


def cache_folder(model: str | Path, root: Path = CACHE) -> Path:
    """``runs/predictions/<key>``: the key hashes the weights, the calibration, the skin-tone code and (where filled) the
    dark frame."""
    config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    parts = [file_digest(Path(model) / WEIGHTS_FILE), repr(config.get("temperature")), repr(config.get("prior_shift")),
             Path(skin_tone.__file__).read_text(encoding="utf-8")]
    parts += ["dark frame filled"] if config.get("dark_frame") == "filled" else []  # a key made before the option: kept
    return root / hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def split_rows(model: str | Path, data: str | Path, split: str, source: str = "ham10000") -> pd.DataFrame:
    """The rows of the model's ``splits.csv`` in ``split`` from ``source``, with image and mask paths from ``data``."""
    manifest = read_manifest(Path(model) / "splits.csv", paths=False)
    chosen = manifest[(manifest["split"] == split) & (manifest["source"] == source)][["image_id"]]
    if chosen.empty:
        raise ValueError(f"{model}/splits.csv has no {source} images in split {split!r}")
    table = read_dataset(Path(data) / FOLDERS[source])
    rows = table.merge(chosen, on="image_id")
    if len(rows) != len(chosen):
        raise FileNotFoundError(f"{len(chosen) - len(rows)} {split} images of {source} are missing from {data}")
    return rows.reset_index(drop=True)


def folder_rows(data: str | Path, source: str) -> pd.DataFrame:
    """Every image of a dataset folder of ``data`` (e.g. the CC0 originals), in dermfuse's table."""
    return read_dataset(Path(data) / FOLDERS[source]).reset_index(drop=True)


def predictions(pipeline: DermFusePipeline, rows: pd.DataFrame, name: str, folder: Path, batch: int = 16) -> pd.DataFrame:
    """The pipeline's results on ``rows`` (one row per image), from ``folder/<name>.csv`` when it is there."""
    path = folder / f"{name}.csv"
    if path.is_file():
        return pd.read_csv(path, dtype={"image_id": str, "band": str, "reason": str})
    classes, kept, started = list(pipeline.model.classes), [], time.monotonic()
    for start in range(0, len(rows), batch):
        chunk = rows.iloc[start:start + batch]
        cases = [Case(r.image_path, r.age, r.sex, r.site, image_id=r.image_id) for r in chunk.itertuples()]
        for row, result in zip(chunk.itertuples(), pipeline.predict(cases)):
            tone = result.skin_tone
            kept.append({"image_id": row.image_id, "label": row.label, "assessable": result.assessable,
                         **{f"p_{c}": p for c, p in zip(classes, result.probabilities)},
                         **{f"q_{c}": p for c, p in zip(classes, result.probabilities_without_metadata)},
                         **{column: tone[column] for column in TONE_COLUMNS}})  # fmt: skip
        if start // batch % 20 == 0:
            print(f"  {name}: {start + len(chunk)}/{len(rows)} images, {time.monotonic() - started:.0f} s", flush=True)
    table = pd.DataFrame(kept)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


def diagnosed(pipeline: DermFusePipeline, rows: pd.DataFrame, change, batch: int = 16, metadata: bool = True,
              explain: bool = False) -> list:
    """The pipeline's diagnoses of ``rows`` (``describe=False``), each image first changed by ``change`` (a function of a
    PIL image: blurred, compressed, turned, ...), with its age, sex and site unless ``metadata=False``, and with heatmaps
    if ``explain``. For the studies of how the model fares on images changed in one way."""
    images = [np.asarray(change(Image.open(row.image_path).convert("RGB"))) for row in rows.itertuples()]
    return diagnosed_images(pipeline, rows, images, batch, metadata, explain)


def diagnosed_images(pipeline: DermFusePipeline, rows: pd.DataFrame, images: list, batch: int = 16,
                     metadata: bool = True, explain: bool = False) -> list:
    """As :func:`diagnosed`, for images already made, one per row (uint8 RGB): where the change depends on the row, as
    an artefact placed around its expert mask."""
    cases = [Case(image, *((row.age, row.sex, row.site) if metadata else ()), image_id=row.image_id)
             for image, row in zip(images, rows.itertuples())]
    return predict_all(pipeline, cases, batch_size=batch, explain=explain, progress=False, describe=False)


def flagged(result, ood_threshold: float) -> bool:
    """Whether the app already flags a diagnosis: not assessable, or warned as out of distribution."""
    return not result.assessable or (result.ood_score is not None and result.ood_score > ood_threshold)


def probabilities(table: pd.DataFrame, classes: list[str], with_metadata: bool = True) -> np.ndarray:
    """(N, classes) calibrated probabilities of a predictions table."""
    return table[[f"{'p' if with_metadata else 'q'}_{c}" for c in classes]].to_numpy(dtype=float)


def expert_skin_tones(rows: pd.DataFrame, name: str, folder: Path) -> pd.DataFrame:
    """ITA around each row's *expert* lesion mask (no network: cheap enough for a whole training split), cached."""
    from dermfuse.data.io import load_image_and_mask

    path = folder / f"{name}.csv"
    if path.is_file():
        return pd.read_csv(path, dtype={"image_id": str, "band": str, "reason": str})
    kept = []
    for row in rows.itertuples():
        if not isinstance(row.mask_path, str):
            raise FileNotFoundError(f"{row.image_id} has no expert mask: the skin tone of the training split needs them")
        image, mask = load_image_and_mask(row.image_path, row.mask_path)
        tone = skin_tone.measure_skin_tone(np.asarray(image), mask).to_dict()
        kept.append({"image_id": row.image_id, "label": row.label, **{column: tone[column] for column in TONE_COLUMNS}})
    table = pd.DataFrame(kept)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


@dataclass
class LeastValueSettings:
    """The settings every study that measures a least value shares (``experiments.focus``, ``.bare_skin``): each study
    subclasses it with its own results file as ``out``."""

    model: str = f"checkpoints/{DEFAULT_MODEL}"  # a saved model folder with splits.csv
    data: str = str(SHARED)  # the shared data folder (HAM10000/, ISIC2018_Task1/, real/, isic_cc0/)
    rejection: float = 0.005  # the share of training images under the least value
    batch: int = 16
    store: bool = True  # write the least value into the model's config.json (if the rule allows)
    out: str = ""  # the study's results file (JSON)

    def __post_init__(self):
        if not 0 < self.rejection < 0.1:
            raise ValueError(f"--rejection={self.rejection}: a small share, e.g. 0.005")


def store_if_held(report: dict, key: str, value: float) -> None:
    """After a study that measures a least value: store ``value`` as the model's ``key`` when its rule held and storing
    was asked for (``report["stored"]``), and say what was done."""
    if report["stored"]:
        store_in_model(report["model"], key, value)
        print(f"stored {key}={value:.3f} in {report['model']}/config.json and rewrote its card")
    elif not report["rule_holds"]:
        print(f"{key} not stored: the rule does not hold")


def store_in_model(model: str | Path, key: str, value) -> None:
    """Write ``value`` under ``key`` into the model folder's ``config.json`` (as ``python -m train gate`` does),
    then rewrite its model card from the folder's files."""
    from publish.push import rewrite_card

    path = Path(model) / "config.json"
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored[key] = value
    path.write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")
    rewrite_card(model)
