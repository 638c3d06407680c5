"""Crash-safe files: the training checkpoint, the run's model folder, JSON artefacts.

Every file is written to a temporary name in the same folder, flushed to disk, and renamed over
the old one with ``os.replace`` (atomic on POSIX and Windows). A process killed at any moment
leaves either the previous complete file or the new complete file, never a torn one; at worst a
stray ``.*.tmp`` file, which the next save removes.

The checkpoint (``checkpoint.pt``) is training state: model and optimiser tensors, scheduler, the
sampler position, step, best metric, history. It is written with ``torch.save`` and read with
``torch.load(weights_only=True)``, so it holds only tensors and plain containers (never pickled
objects). The published model is never this file: it is ``DermFuse.save_pretrained`` output
(``config.json`` + ``model.safetensors``), kept in the run's ``model/`` folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"
MODEL_DIR = "model"
# Tests set this to a number of seconds: each save then sleeps after writing the temporary file and
# before renaming it, so a test can kill the process in the middle of a save.
SAVE_DELAY_ENV = "DERMFUSE_TEST_SAVE_DELAY"


def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    remove_temporaries(path.parent, path.name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    if os.environ.get(SAVE_DELAY_ENV):
        time.sleep(float(os.environ[SAVE_DELAY_ENV]))
    os.replace(tmp, path)
    _fsync_folder(path.parent)
    return path


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: start the run without --resume, or point --out at the run folder")
    return torch.load(path, map_location="cpu", weights_only=True)


def save_model(model, folder) -> Path:
    """``model.save_pretrained`` into ``folder``, replacing its contents as one step.

    The new files are written to a temporary sibling folder, the old folder is moved aside, the new
    one renamed into place, the old one deleted. If a crash strikes between the two renames,
    :func:`model_folder` finds the set-aside copy.
    """
    folder = Path(folder)
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    _fsync_folder(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def model_folder(folder) -> Path:
    """The model folder written by :func:`save_model`, or its set-aside copy after a crash mid-swap."""
    folder = Path(folder)
    old = folder.with_name(f".{folder.name}.old")
    if not folder.exists() and old.exists():
        os.replace(old, folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} holds no saved model (model.safetensors): has the run finished an epoch?")
    return folder


def write_json(path, payload) -> Path:
    """Write ``payload`` as indented JSON atomically; NaN and infinities become ``null``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(payload), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_temporaries(folder, name: str) -> None:
    """Delete stray temporary files of ``name`` left by a killed save."""
    for stray in Path(folder).glob(f".{name}.*.tmp"):
        stray.unlink(missing_ok=True)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
