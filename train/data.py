"""Where a run's images come from: a dataset root, or a freshly generated phantom set; and its split.

The split is made once (grouped by lesion, stratified by label: :func:`dermfuse.data.make_splits`)
and written to the run folder as ``splits.csv``; every later step (resume, stage 2, evaluation,
the model card) reads that manifest, so all of them see exactly the same images in each split.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dermfuse.data import make_splits, read_dataset, read_manifest, write_manifest
from dermfuse.vocab import METADATA_FIELDS, UNKNOWN
from dermfuse.data.table import combine
from dermfuse.data.splits import PATH_COLUMNS
from train.config import TrainConfig
from train.runtime import Runtime

MANIFEST = "splits.csv"
PHANTOM_DIR = "phantoms"
PHANTOM_CONFIG = "phantom_config.json"

NO_DATA = """no training data: give --data=ROOT (a dataset folder in any layout dermfuse reads), or
--phantoms=N to train on N freshly generated phantom images (synthetic; for trying the machinery).

Getting the real datasets (free registration, CC BY-NC 4.0):
  HAM10000 (10,015 dermoscopy images, 7 classes, metadata):
    https://doi.org/10.7910/DVN/DBW86T  (Harvard Dataverse: HAM10000_images_part_1.zip,
    HAM10000_images_part_2.zip, HAM10000_metadata.csv, and HAM10000_segmentations_lesion_tschandl.zip
    for the lesion masks). Unzip all into one folder and pass it as --data.
  ISIC 2018 Task 1 (2,594 training images with lesion masks) and Task 3 (= HAM10000 + ground truth):
    https://challenge.isic-archive.com/data/#2018  (ISIC2018_Task1-2_Training_Input.zip,
    ISIC2018_Task1_Training_GroundTruth.zip). Unzip into one folder and pass it as --data.
Stage 1 needs lesion masks (HAM10000 with the Tschandl masks, or ISIC 2018 Task 1); stage 2 needs labels."""


def prepare_table(config: TrainConfig, runtime: Runtime, run: Path, reuse_manifest: Path | None = None) -> pd.DataFrame:
    """The run's split table (the unified columns + ``split``), written to ``run/splits.csv``.

    In order of precedence: ``--manifest``; the run's own manifest when resuming; ``reuse_manifest``
    (stage 2: the segmenter run's split) when no data was named; else the dataset at ``--data`` or
    ``--phantoms`` freshly generated, split with ``--val_fraction``/``--test_fraction`` and ``--seed``.
    Only the main process generates and writes; the others read the written manifest.
    """
    target = run / MANIFEST
    if runtime.is_main:
        if config.manifest:
            table = read_manifest(config.manifest)
        elif config.resume and target.is_file():
            table = read_manifest(target)
        elif reuse_manifest is not None and not (config.data or config.phantoms):
            table = read_manifest(reuse_manifest)
        else:
            table = combine(read_dataset(root) for root in data_roots(config, run))
            fractions = (1 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction)
            table = make_splits(table, fractions, seed=config.seed)
        write_manifest(table, target)
    runtime.barrier()
    return read_manifest(target)


def require_data(config: TrainConfig, reuse_manifest: Path | None = None) -> None:
    """Fail before anything is written when the run has no way to find images (with download help)."""
    if not (config.data or config.phantoms or config.manifest or config.resume or reuse_manifest):
        raise ValueError(NO_DATA)


def data_roots(config: TrainConfig, run: Path) -> list[Path]:
    """The folders of ``--data`` (comma-separated, read in order and combined without duplicate
    images), or a phantom set generated into ``run/phantoms`` for ``--phantoms=N``."""
    if config.data:
        roots = [Path(part.strip()).resolve() for part in config.data.split(",") if part.strip()]
        for root in roots:
            if not root.is_dir():
                raise FileNotFoundError(f"--data={config.data}: no such folder {root}\n\n{NO_DATA}")
        return roots
    if not config.phantoms:
        raise ValueError(NO_DATA)
    from dermfuse.data.phantom import generate_dataset

    root = (run / PHANTOM_DIR).resolve()
    if not (root / "HAM10000_metadata.csv").is_file():
        generate_dataset(root, config.phantoms, seed=config.seed, size=config.phantom_size,
                         difficulty=config.phantom_difficulty, workers=max(1, config.workers),
                         overwrite=False, progress=config.progress)  # fmt: skip
    return [root]


def describe_data(table: pd.DataFrame) -> str:
    """A one-line name of the training data, e.g. for the model's ``dataset`` field and its card."""
    roots = {Path(p).parent.parent for p in table["image_path"].dropna()}
    for root in roots:
        if (root / PHANTOM_CONFIG).is_file():
            info = json.loads((root / PHANTOM_CONFIG).read_text(encoding="utf-8"))
            return (f"phantom (synthetic): {info['n']} images generated by dermfuse.data.phantom "
                    f"v{info['version']}, difficulty {info['difficulty']}, seed {info['seed']}, {info['size']} px")  # fmt: skip
    sources = "+".join(sorted(table["source"].dropna().unique())) or "unknown"
    return f"{sources} ({len(table)} images)"


def known_metadata(table: pd.DataFrame) -> list[str]:
    """The metadata fields (age, sex, site) known for at least one image of ``table``: what a classifier
    trained on it can have learned from, recorded as the model's ``trained_metadata``."""
    known = {"age": table["age"].notna(), "sex": table["sex"].fillna(UNKNOWN).ne(UNKNOWN),
             "site": table["site"].fillna(UNKNOWN).ne(UNKNOWN)}
    return [field for field in METADATA_FIELDS if bool(known[field].any())]


def age_range(table: pd.DataFrame) -> list[float] | None:
    """[youngest, oldest] age among the images of ``table`` (``None`` if no age is known): the model's ``age_range``,
    outside which the pipeline does not ask it to extrapolate."""
    ages = table["age"].dropna()
    return None if ages.empty else [float(ages.min()), float(ages.max())]


def split_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{split: {label: images}} (``<none>`` for unlabelled images), for logs and the model card."""
    labels = table["label"].fillna("<none>")
    return {split: {str(k): int(v) for k, v in labels[table["split"] == split].value_counts().sort_index().items()}
            for split in ("train", "val", "test")}  # fmt: skip


def public_manifest(table: pd.DataFrame) -> pd.DataFrame:
    """The split manifest without local file paths: what is published next to a model."""
    return table.drop(columns=[c for c in PATH_COLUMNS if c in table.columns])
