"""An independent check of the metadata benchmark's logistic-regression row.

Straight from ``HAM10000_metadata.csv`` with scikit-learn alone (none of dermfuse's readers,
encoders or fold code): the same recipe (one-hot sex and unified site, age/100, its square and a
missing flag; class-balanced logistic regression; ``StratifiedGroupKFold(5, shuffle, seed 0)``
grouped by lesion). The benchmark's row must match it to within 0.005.

    .venv/bin/python experiments/independent_lr.py --data ../shared/data --json docs/results/independent_lr.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dermfuse import vocab  # noqa: E402  (the vocabularies only: the site map and category lists)


def age_features(age: pd.DataFrame) -> np.ndarray:
    years = age.iloc[:, 0]
    scaled = years.fillna(0).to_numpy() / 100
    return np.column_stack([scaled, scaled**2, years.isna().to_numpy()])


def independent_logistic_regression(data: Path, seed: int = 0) -> dict:
    """Mean balanced accuracy and macro AUC over the 5 folds, with each fold's values."""
    raw = pd.read_csv(Path(data) / "HAM10000_metadata.csv")
    frame = pd.DataFrame({"sex": raw["sex"].fillna("unknown"), "site": raw["localization"].map(vocab.HAM10000_SITE_MAP),
                          "age": raw["age"]})  # fmt: skip
    model = make_pipeline(
        ColumnTransformer([("cat", OneHotEncoder(categories=[list(vocab.SEXES), list(vocab.SITES)]), ["sex", "site"]),
                           ("age", FunctionTransformer(age_features), ["age"])]),  # fmt: skip
        LogisticRegression(class_weight="balanced", max_iter=5000),
    )
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    balanced, auc = [], []
    for train, test in folds.split(frame, raw["dx"], raw["lesion_id"]):
        model.fit(frame.iloc[train], raw["dx"].iloc[train])
        probabilities = model.predict_proba(frame.iloc[test])
        balanced.append(balanced_accuracy_score(raw["dx"].iloc[test], model.classes_[probabilities.argmax(1)]))
        auc.append(roc_auc_score(raw["dx"].iloc[test], probabilities, multi_class="ovr", average="macro"))
    return {"balanced_accuracy": float(np.mean(balanced)), "macro_auc": float(np.mean(auc)),
            "folds": {"balanced_accuracy": balanced, "macro_auc": auc}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--json", default=None, help="write the numbers here too")
    args = parser.parse_args(argv)
    numbers = independent_logistic_regression(Path(args.data))
    print(f"independent logistic regression: balanced accuracy {numbers['balanced_accuracy']:.4f}, "
          f"macro AUC {numbers['macro_auc']:.4f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
