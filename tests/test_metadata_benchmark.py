"""The real-metadata benchmark: its logistic-regression row against an independent computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from dermfuse import vocab
from dermfuse.data import kfold
from train import metadata_benchmark as mb


@pytest.fixture(scope="module")
def ham(shared_data):
    return mb.ham10000_table(shared_data)


def independent_logistic_regression(shared_data) -> tuple[float, float]:
    """Straight from the CSV with scikit-learn alone: same recipe, none of dermfuse's code."""
    raw = pd.read_csv(shared_data / "HAM10000_metadata.csv")
    site = raw["localization"].map(vocab.HAM10000_SITE_MAP)
    frame = pd.DataFrame({"sex": raw["sex"].fillna("unknown"), "site": site, "age": raw["age"]})
    age_features = FunctionTransformer(lambda a: np.column_stack([
        a.fillna(0).to_numpy()[:, 0] / 100, (a.fillna(0).to_numpy()[:, 0] / 100) ** 2, a.isna().to_numpy()[:, 0]]))
    model = make_pipeline(
        ColumnTransformer([("cat", OneHotEncoder(categories=[list(vocab.SEXES), list(vocab.SITES)]), ["sex", "site"]),
                           ("age", age_features, ["age"])]),
        LogisticRegression(class_weight="balanced", max_iter=5000),
    )
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    balanced, auc = [], []
    for train, test in folds.split(frame, raw["dx"], raw["lesion_id"]):
        model.fit(frame.iloc[train], raw["dx"].iloc[train])
        probabilities = model.predict_proba(frame.iloc[test])
        balanced.append(balanced_accuracy_score(raw["dx"].iloc[test], model.classes_[probabilities.argmax(1)]))
        auc.append(roc_auc_score(raw["dx"].iloc[test], probabilities, multi_class="ovr", average="macro"))
    return float(np.mean(balanced)), float(np.mean(auc))


@pytest.mark.slow
def test_logistic_regression_row_matches_independent_computation(ham, shared_data):
    ours = mb.cross_validate(ham, kfold(ham, 5, 0), list(vocab.HAM10000_CLASSES), 0, models=["logistic_regression"])
    balanced, auc = independent_logistic_regression(shared_data)
    assert abs(ours["logistic_regression"]["balanced_accuracy"]["mean"] - balanced) <= 0.005
    assert abs(ours["logistic_regression"]["macro_auc"]["mean"] - auc) <= 0.005


def test_metadata_transformer_learns_something_on_one_fold(ham):
    classes = list(vocab.HAM10000_CLASSES)
    train_idx, test_idx = next(kfold(ham, 5, 0))
    probabilities = mb.predict_transformer(ham.iloc[train_idx], ham.iloc[test_idx], classes, seed=0, epochs=5)
    labels = [classes.index(c) for c in ham.iloc[test_idx]["label"]]
    assert mb.scores(labels, probabilities, classes)["balanced_accuracy"] > 0.2  # chance is 1/7 ≈ 0.143
