"""The other-clinics study's groups: right counts and AUCs on images whose answers are known."""

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.other_clinics import MIN_GROUP, by_group, separation
from experiments.report_sections import other_clinics_section

RESULTS_PATH = Path("docs/results/other_clinics.json")


def test_separation_of_known_scores():
    assert separation([True, True, False, False], [0.9, 0.2, 0.3, 0.1]) == {"images": 4, "melanomas": 2, "auc": 0.75}
    assert separation([False, False], [0.9, 0.2])["auc"] is None  # one diagnosis only: no AUC


def test_groups_split_the_images_and_score_each_group_on_its_own():
    n = MIN_GROUP + 6  # 4:3 frames: MIN_GROUP of them; 3:2 frames: 6, too few for a group of their own
    melanoma = np.arange(n) % 2 == 0
    factors = pd.DataFrame({
        "score": np.where(melanoma, 0.8, 0.2),  # perfect, but for the 3:2 frames, where it is reversed
        "score_without_metadata": np.full(n, 0.5),
        "frame": [1.33] * MIN_GROUP + [1.5] * 6,
        "lesion_share": np.linspace(0.01, 0.9, n),
        "age_known": [True] * (n - 4) + [False] * 4,
        "ood_flagged": [False] * n,
        "sticker": [False] * n,
    })
    factors.loc[MIN_GROUP:, "score"] = np.where(melanoma[MIN_GROUP:], 0.1, 0.9)
    report = by_group(melanoma, factors)
    assert report["without_metadata"]["auc"] == 0.5  # every score alike
    assert report["median_score"] == {"melanoma": 0.8, "nevus": 0.2}
    frames = report["groups"]["frame width / height"]
    assert list(frames) == ["1.33"] and frames["1.33"] == {"images": MIN_GROUP, "melanomas": MIN_GROUP // 2, "auc": 1.0}
    assert report["all"]["auc"] < 1.0  # the reversed 3:2 frames count overall
    thirds = report["groups"]["lesion share of the frame"]
    assert sum(entry["images"] for entry in thirds.values()) == n and len(thirds) == 3
    assert [key.split()[0] for key in thirds] == ["small", "middle", "large"]
    assert report["groups"]["age known"]["no"]["images"] == 4
    assert list(report["groups"]["flagged out-of-distribution"]) == ["no"]


def test_the_results_section_gives_each_group_or_says_how_to_measure():
    assert "python -m experiments.other_clinics" in other_clinics_section(None, RESULTS_PATH)
    entry = {"images": 40, "melanomas": 10, "auc": 0.61}
    report = {"labels": {"nv": 30, "mel": 10}, "all": entry, "without_metadata": {**entry, "auc": 0.6},
              "median_score": {"melanoma": 0.1, "nevus": 0.04}, "groups": {"age known": {"no": {**entry, "auc": None}}},
              "minutes": 2.0, "command": "python -m experiments.other_clinics"}
    text = other_clinics_section(report, RESULTS_PATH)
    assert "| all |  | 40 | 10 | 0.610 |" in text and "| without metadata |  | 40 | 10 | 0.600 |" in text
    assert "| age known | no | 40 | 10 | – |" in text
    assert "median melanoma score 0.100 for the melanomas and 0.040 for the nevi" in text

