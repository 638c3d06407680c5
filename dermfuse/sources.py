"""Where models come from: the checkpoints shipped in the repository, or a folder / Hub id the user names."""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
DEFAULT_MODEL = "dermfuse-small-ham10000"  # learned from real HAM10000 / ISIC 2018 images: the app's and CLI's default
DEMO_MODEL = "dermfuse-tiny-phantom"  # learned from synthetic phantoms: the teaching model
MODEL_ENV = "DERMFUSE_MODEL"


def default_model_source() -> str:
    """``$DERMFUSE_MODEL`` if set, else the real-data checkpoint shipped in ``checkpoints/``."""
    return os.environ.get(MODEL_ENV) or str(CHECKPOINTS / DEFAULT_MODEL)


def shipped_models() -> dict[str, str]:
    """Name → folder of every model checkpoint in ``checkpoints/`` (folders with a config.json)."""
    if not CHECKPOINTS.is_dir():
        return {}
    return {p.name: str(p) for p in sorted(CHECKPOINTS.iterdir()) if (p / "config.json").is_file()}
