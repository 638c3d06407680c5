"""The speed benchmark's second evaluation batch is what `dermfuse evaluate` scores: the model's HAM10000 test split."""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_inference import SHARED, ham10000_test_cases  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "checkpoints" / "dermfuse-small-ham10000"


def test_the_evaluation_batch_is_the_models_ham10000_test_split():
    if not (SHARED / "HAM10000" / "HAM10000_images").is_dir():
        pytest.skip(f"HAM10000 images not found at {SHARED / 'HAM10000'} (they live beside the repository, not in it)")
    cases = ham10000_test_cases(str(MODEL), 16)
    assert len(cases) == 16 and all(case.image.size == (256, 256) for case in cases)
    splits = pd.read_csv(MODEL / "splits.csv")
    test = set(splits.loc[(splits["split"] == "test") & (splits["source"] == "ham10000"), "image_id"])
    names = {case.image_id for case in cases}
    assert names <= test
    assert any(case.age == case.age for case in cases) and any(case.site for case in cases)  # their metadata, not blanks


def test_without_a_model_folder_there_is_no_evaluation_batch(tmp_path):
    assert ham10000_test_cases(None, 16) is None
    assert ham10000_test_cases(str(tmp_path), 16) is None  # no splits.csv
