"""The real-metadata benchmark: its logistic-regression row against an independent computation."""

from __future__ import annotations

import pytest

from dermfuse import vocab
from dermfuse.data import kfold
from experiments import metadata_benchmark as mb
from experiments.independent_lr import independent_logistic_regression


@pytest.fixture(scope="module")
def ham(shared_data):
    return mb.ham10000_table(shared_data)


@pytest.mark.slow
def test_logistic_regression_row_matches_independent_computation(ham, shared_data):
    ours = mb.cross_validate(ham, kfold(ham, 5, 0), list(vocab.HAM10000_CLASSES), 0, models=["logistic_regression"])
    independent = independent_logistic_regression(shared_data)
    assert abs(ours["logistic_regression"]["balanced_accuracy"]["mean"] - independent["balanced_accuracy"]) <= 0.005
    assert abs(ours["logistic_regression"]["macro_auc"]["mean"] - independent["macro_auc"]) <= 0.005


def test_metadata_transformer_learns_something_on_one_fold(ham):
    classes = list(vocab.HAM10000_CLASSES)
    train_idx, test_idx = next(kfold(ham, 5, 0))
    probabilities = mb.predict_transformer(ham.iloc[train_idx], ham.iloc[test_idx], classes, seed=0, epochs=5)
    labels = [classes.index(c) for c in ham.iloc[test_idx]["label"]]
    assert mb.scores(labels, probabilities, classes)["balanced_accuracy"] > 0.2  # chance is 1/7 ≈ 0.143
