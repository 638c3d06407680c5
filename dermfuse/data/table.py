"""The unified dataset table every reader returns, and the bookkeeping the readers share.

One row per image, columns :data:`TABLE_COLUMNS`, values in the vocabularies of
:mod:`dermfuse.vocab`. Missing values are pandas NA (``pd.isna``): ``label`` for segmentation-only
tables, ``age`` when unknown, ``image_path``/``mask_path`` when the table was built from the CSVs
alone (``images=False``) or has no mask, ``lesion_id`` when the dataset does not give one.

A bad row is never dropped silently: :class:`RowProblems` raises at the first one
(``on_error="raise"``) or records it in ``table.attrs["skipped"]`` and logs the count
(``on_error="skip"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from dermfuse.data.io import mask_transpose, read_header

logger = logging.getLogger(__name__)

TABLE_COLUMNS: tuple[str, ...] = (
    "image_id", "image_path", "mask_path", "label", "age", "sex", "site", "lesion_id", "source",
)
SOURCES: tuple[str, ...] = ("ham10000", "isic2018_task1", "isic2018_task3", "isic2019", "ph2", "folder")
ON_ERROR: tuple[str, ...] = ("raise", "skip")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_DOWNSAMPLED = "_downsampled"


def canonical_image_id(name: str) -> str:
    """The image id a file name stands for: extension and ISIC 2019's ``_downsampled`` suffix removed.

    ISIC 2019 renamed some archive images ``ISIC_xxxxxxx_downsampled``; the id without the suffix is
    the one other releases (HAM10000, ISIC 2018) use, so deduplication compares these ids.
    """
    stem = Path(str(name).strip()).name
    if Path(stem).suffix.lower() in IMAGE_SUFFIXES:
        stem = Path(stem).stem
    return stem[: -len(_DOWNSAMPLED)] if stem.endswith(_DOWNSAMPLED) else stem


class RowProblems:
    """Raises on a bad row (``on_error="raise"``) or records it to be reported (``"skip"``).

    Use ``with problems.row(where): ...`` around the building of one row: a ``ValueError`` inside
    either stops the reader with ``where`` (file and 1-based line) prepended, or skips the rest of
    the block and records the reason.
    """

    def __init__(self, on_error: str):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r}: expected one of {', '.join(ON_ERROR)}")
        self.on_error = on_error
        self.skipped: list[str] = []

    @contextmanager
    def row(self, where: str):
        try:
            yield
        except ValueError as error:
            if self.on_error == "raise":
                raise ValueError(f"{where}: {error} (pass on_error='skip' to drop such rows with a report)") from None
            self.skipped.append(f"{where}: {error}")


def check_masks(masks) -> None:
    """Validate the ``masks`` option every reader takes ('auto' | True | False), before any file is read."""
    if not (masks is True or masks is False or masks == "auto"):
        raise ValueError(f"masks={masks!r}: expected 'auto' (use masks that exist), True (require them) or False")


def require_columns(frame: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    """Raise ``ValueError`` naming the file and every required column it lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} lacks column(s) {', '.join(missing)} (it has {', '.join(map(str, frame.columns))}): "
            "is this the right file, unmodified?"
        )


def read_csv(path: Path) -> pd.DataFrame:
    """Read a dataset CSV with every column as text (ids such as ``0012`` keep their zeros)."""
    if not path.is_file():
        raise ValueError(f"{path} not found: check the dataset root")
    return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)


def csv_line(index: int) -> int:
    """The 1-based file line of the data row at 0-based position ``index`` (line 1 is the header)."""
    return index + 2


class FileIndex:
    """Image (or mask) files of some folders, found by name stem: one directory listing, not a stat per row."""

    def __init__(self, folders: Sequence[Path], suffixes: Sequence[str] = IMAGE_SUFFIXES):
        self.folders = [Path(folder) for folder in folders]
        self.by_stem: dict[str, str] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            with os.scandir(folder) as entries:
                for entry in entries:
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix.lower() in suffixes and entry.is_file():
                        self.by_stem.setdefault(stem, entry.path)

    def find(self, stem: str) -> str | None:
        return self.by_stem.get(stem)

    def require(self, stem: str) -> str:
        path = self.find(stem)
        if path is None:
            where = ", ".join(str(folder) for folder in self.folders) or "(no folder)"
            raise ValueError(f"image file {stem}.jpg (or .png) not found in {where}: check the dataset is complete")
        return path


def checked_mask(image_path: str, mask_path: str | None, masks) -> str | None:
    """The mask path to put in the table (``masks`` = 'auto' | True | False), its size checked from headers."""
    if masks is False:
        return None
    if mask_path is None:
        if masks is True:
            raise ValueError(f"no mask for image {image_path}: masks=True requires one per image")
        return None
    image_size, orientation = read_header(image_path)
    mask_size, _ = read_header(mask_path)
    mask_transpose(image_size, orientation, mask_size, image_path, mask_path)
    return mask_path


def finish_table(rows: list[dict], problems: RowProblems, source: str) -> pd.DataFrame:
    """Rows → the unified table (column order and dtypes fixed), skipped rows reported."""
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    for column in TABLE_COLUMNS:
        table[column] = table[column].astype("float64" if column == "age" else "str")
    table.attrs["skipped"] = list(problems.skipped)
    if problems.skipped:
        logger.warning(
            "%s: skipped %d row(s); first: %s", source, len(problems.skipped), "; ".join(problems.skipped[:3])
        )
    return table


def combine(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate unified tables and drop repeated images (the first table's row wins).

    HAM10000 is inside ISIC 2019 (and ISIC 2018 Task 3): the same photograph under the same
    id, or with ``_downsampled`` appended. Keeping one row per ``image_id`` (the readers
    already strip the suffix) stops an image from being trained on and tested on under two names.
    ``attrs["duplicates_dropped"]`` holds the count, ``attrs["skipped"]`` the tables' skipped rows.
    """
    tables = list(tables)
    if not tables:
        raise ValueError("combine() needs at least one table")
    for table in tables:
        require_columns(table, TABLE_COLUMNS, Path("<table>"))
    table = pd.concat([t[list(TABLE_COLUMNS)] for t in tables], ignore_index=True)
    table["image_id"] = table["image_id"].map(canonical_image_id)
    duplicated = table["image_id"].duplicated(keep="first")
    dropped = int(duplicated.sum())
    table = table[~duplicated].reset_index(drop=True)
    table.attrs = {
        "skipped": [line for t in tables for line in t.attrs.get("skipped", [])],
        "duplicates_dropped": dropped,
    }
    if dropped:
        logger.info("combine: dropped %d image(s) already present in an earlier table", dropped)
    return table
