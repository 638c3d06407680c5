"""The app's two example galleries: real dermoscopy images, and phantoms for the teaching view.

Real examples are the CC0 ISIC images in the repository's ``examples/`` folder, listed with their
ISIC id, diagnosis and licence in ``examples/examples.csv`` (written by ``python -m publish.examples``);
the gallery and the picked example's note show all three: the licence is why these images may ship.

Phantoms of every class, with their ground truth and metadata, belong to the teaching model (it learned
from phantoms). They are made on first request (not at import: start-up stays fast), written once
as PNG files into a cache folder (``$DERMFUSE_CACHE`` or the system temp folder) and reused by every
later request and run. PNG is lossless, so the file a user picks is exactly the image the tests diagnose.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from .. import vocab
from ..data.phantom import PHANTOM_VERSION, generate_phantom, image_seed
from . import views

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES_TABLE = "examples.csv"
EXAMPLE_SEED = 20251017  # a seed family of its own, apart from the training sets' seeds
PER_CLASS = 2
SIZE = 384
DIFFICULTY = 0.3  # clearer than the benchmark's default 0.5: these are for teaching
CACHE_ENV = "DERMFUSE_CACHE"
_lock = threading.Lock()
_phantoms: list["PhantomExample"] | None = None


@dataclass(frozen=True)
class RealExample:
    """One real dermoscopy example: its file, the archive's diagnosis and metadata, and its licence."""

    path: str
    label: str
    age: float | None
    sex: str
    site: str
    isic_id: str
    licence: str
    source: str

    @property
    def caption(self) -> str:
        return f"{self.isic_id} · {self.label} · {self.licence}"  # short: a gallery caption is one line

    def truth(self) -> str:
        """Markdown shown when the example is picked."""
        age = "unknown" if self.age is None else f"{self.age:g}"
        return (f"**{self.isic_id}** ({self.source}, licence {self.licence}) · diagnosis in the archive: "
                f"{vocab.DIAGNOSIS_NAMES[self.label]} (`{self.label}`, {views.malignancy(self.label)}) · "
                f"age {age}, {self.sex}, {self.site}")


def real_examples(folder: Path = EXAMPLES) -> list[RealExample]:
    """The real examples listed in ``folder/examples.csv``, in its order (none if the table is absent).

    A row whose file is missing or whose licence is not CC0 is an error: only CC0 images may ship.
    """
    table = folder / EXAMPLES_TABLE
    if not table.is_file():
        return []
    examples = []
    with open(table, newline="", encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            path = folder / row["file"]
            if not path.is_file():
                raise ValueError(f"{table} lists {row['file']}, which is not in {folder}: "
                                 "rerun `python -m publish.examples` or fix the table")
            if row["licence"] != "CC0":
                raise ValueError(f"{table}: {row['file']} is licensed {row['licence']!r}; only CC0 images may ship")
            if row["diagnosis"] not in vocab.DIAGNOSIS_NAMES:
                raise ValueError(f"{table}: {row['file']} has unknown diagnosis {row['diagnosis']!r}; "
                                 f"use one of {', '.join(vocab.DIAGNOSIS_NAMES)}")
            examples.append(RealExample(str(path), row["diagnosis"], float(row["age"]) if row["age"] else None,
                                        row["sex"] or vocab.UNKNOWN, row["site"] or vocab.UNKNOWN, row["isic_id"],
                                        row["licence"], row["source"]))  # fmt: skip
    return examples


@dataclass(frozen=True)
class PhantomExample:
    """One gallery phantom: its PNG file and its truth."""

    path: str
    label: str
    age: float | None
    sex: str
    site: str

    @property
    def caption(self) -> str:
        return self.label

    def truth(self) -> str:
        """Markdown shown when the example is picked."""
        age = "unknown" if self.age is None else f"{self.age:g}"
        return (f"**Ground truth of this phantom:** {vocab.DIAGNOSIS_NAMES[self.label]} (`{self.label}`, "
                f"{views.malignancy(self.label)}) · age {age}, {self.sex}, {self.site}")


def cache_folder() -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "dermfuse-app")
    return root / f"examples-v{PHANTOM_VERSION}-s{EXAMPLE_SEED}-{SIZE}"


def phantom_examples() -> list[PhantomExample]:
    """Every phantom example, class by class (made and cached on the first call)."""
    global _phantoms
    with _lock:
        if _phantoms is None:
            _phantoms = _load_or_make(cache_folder())
        return _phantoms


def _load_or_make(folder: Path) -> list[PhantomExample]:
    manifest = folder / "examples.json"
    if manifest.is_file():
        examples = [PhantomExample(**row) for row in json.loads(manifest.read_text(encoding="utf-8"))]
        if all(Path(e.path).is_file() for e in examples):
            return examples
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for index, (label, k) in enumerate((label, k) for label in vocab.HAM10000_CLASSES for k in range(PER_CLASS)):
        phantom = generate_phantom(label, seed=image_seed(EXAMPLE_SEED, index), size=SIZE, difficulty=DIFFICULTY)
        path = folder / f"{label}-{k + 1}.png"
        _write_atomically(path, lambda p: Image.fromarray(phantom.image).save(p, format="PNG"))
        examples.append(PhantomExample(str(path), label, phantom.age, phantom.sex, phantom.site))
    _write_atomically(manifest, lambda p: p.write_text(json.dumps([asdict(e) for e in examples], indent=1)))
    return examples


def _write_atomically(path: Path, write) -> None:
    """Write via a temporary name and rename, so another process never reads half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(partial)
    os.replace(partial, path)
