"""The examples gallery: phantoms of every class, with their ground truth and metadata.

Made on first request (not at import: start-up stays fast), written once as PNG files into a cache
folder (``$DERMFUSE_CACHE`` or the system temp folder) and reused by every later request and run.
PNG is lossless, so the file a user picks is exactly the image the examples' tests diagnose.
"""

from __future__ import annotations

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

EXAMPLE_SEED = 20251017  # a seed family of its own, apart from the training sets' seeds
PER_CLASS = 2
SIZE = 384
DIFFICULTY = 0.3  # clearer than the benchmark's default 0.5: these are for teaching
CACHE_ENV = "DERMFUSE_CACHE"
_lock = threading.Lock()
_examples: list["Example"] | None = None


@dataclass(frozen=True)
class Example:
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


def gallery_examples() -> list[Example]:
    """Every example, class by class (made and cached on the first call)."""
    global _examples
    with _lock:
        if _examples is None:
            _examples = _load_or_make(cache_folder())
        return _examples


def _load_or_make(folder: Path) -> list[Example]:
    manifest = folder / "examples.json"
    if manifest.is_file():
        examples = [Example(**row) for row in json.loads(manifest.read_text(encoding="utf-8"))]
        if all(Path(e.path).is_file() for e in examples):
            return examples
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for index, (label, k) in enumerate((label, k) for label in vocab.HAM10000_CLASSES for k in range(PER_CLASS)):
        phantom = generate_phantom(label, seed=image_seed(EXAMPLE_SEED, index), size=SIZE, difficulty=DIFFICULTY)
        path = folder / f"{label}-{k + 1}.png"
        _write_atomically(path, lambda p: Image.fromarray(phantom.image).save(p, format="PNG"))
        examples.append(Example(str(path), label, phantom.age, phantom.sex, phantom.site))
    _write_atomically(manifest, lambda p: p.write_text(json.dumps([asdict(e) for e in examples], indent=1)))
    return examples


def _write_atomically(path: Path, write) -> None:
    """Write via a temporary name and rename, so another process never reads half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(partial)
    os.replace(partial, path)
