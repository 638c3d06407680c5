"""The ISIC probe's adopt step rewrites a model folder: it refuses the shipped one and a missing segmenter run."""

import hashlib

import pytest

from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from experiments.isic_probe import main


def test_adopt_refuses_to_write_into_the_shipped_model():
    weights = CHECKPOINTS / DEFAULT_MODEL / "model.safetensors"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    with pytest.raises(SystemExit, match="give it a copy"):
        main(["adopt", "--segmenter=runs/seg-isic-ft/long"])
    with pytest.raises(SystemExit, match="adopt needs --segmenter"):
        main(["adopt", "--model=runs/adopted"])
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before  # nothing written
