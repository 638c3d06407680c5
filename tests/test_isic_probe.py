"""The ISIC studies' adopt steps write a model folder: they refuse the shipped one (and the probe a missing segmenter run)."""

import hashlib

import pytest

from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL
from experiments import isic_classifier
from experiments.isic_probe import main


def test_adopt_refuses_to_write_into_the_shipped_model():
    weights = CHECKPOINTS / DEFAULT_MODEL / "model.safetensors"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    with pytest.raises(SystemExit, match="give it a copy"):
        main(["adopt", "--segmenter=runs/seg-isic-ft/long"])
    with pytest.raises(SystemExit, match="adopt needs --segmenter"):
        main(["adopt", "--model=runs/adopted"])
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before  # nothing written


def test_classifier_adopt_refuses_the_shipped_model_and_a_manifest_path():
    weights = CHECKPOINTS / DEFAULT_MODEL / "model.safetensors"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    with pytest.raises(SystemExit, match="another --out than the shipped"):
        isic_classifier.main(["adopt", f"--out={CHECKPOINTS / DEFAULT_MODEL}"])
    with pytest.raises(SystemExit):  # argparse's error: the default --out is the manifest's file, not a folder
        isic_classifier.main(["adopt"])
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before  # nothing written
