"""The compute-path comparison: its agreement numbers, its settings' errors and its model-card section."""

import numpy as np
import pytest

from experiments.compute_paths import ComputePathsConfig, agreement, compute_paths_table, same_kind_of_cpu
from publish.card import _compute_paths


def test_agreement_counts_top_class_flips_and_the_largest_change_per_image():
    first = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    second = np.array([[0.7, 0.2, 0.1], [0.3, 0.45, 0.25], [0.1, 0.12, 0.78]])
    result = agreement(first, second)
    assert result["images"] == 3
    assert result["same_top_class"] == pytest.approx(2 / 3)  # the second image's top class flips
    assert result["max_change"] == pytest.approx(0.1)
    assert result["median_change"] == pytest.approx(0.02)
    assert result["moved_over_0.05"] == 1 and result["moved_over_0.01"] == 2
    assert agreement(first, first)["max_change"] == 0 and agreement(first, first)["same_top_class"] == 1


def test_agreement_refuses_arrays_that_do_not_match():
    with pytest.raises(ValueError, match="equal"):
        agreement(np.zeros((3, 7)), np.zeros((2, 7)))


def test_settings_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="splits.csv"):
        ComputePathsConfig(model=str(tmp_path))
    (tmp_path / "splits.csv").write_text("image_id\n")
    with pytest.raises(ValueError, match="half_images"):
        ComputePathsConfig(model=str(tmp_path), half_images=-1)
    with pytest.raises(ValueError, match="kept_below"):
        ComputePathsConfig(model=str(tmp_path), kept_below=-1)


def test_the_card_and_the_table_show_both_paths_and_fp16_storage():
    numbers = {"classification": {"accuracy": 0.77, "balanced_accuracy": 0.7254, "macro_auc": 0.9444, "ece": 0.0448},
               "classification_without_metadata": {"accuracy": 0.76, "balanced_accuracy": 0.711, "macro_auc": 0.939, "ece": 0.04},
               "segmentation": {"dice": 0.9476, "iou": 0.906, "thresholded_jaccard": 0.894}}
    half = {"images": 300, "same_top_class": 0.99, "median_change": 0.003, "max_change": 0.066, "moved_over_0.05": 3,
            "moved_over_0.01": 26}
    results = {"images": 1498, "command": "python -m train compute-paths",
               "cpu": {"machine": "x86_64", "threads": 2, "bf16": True, "amx": True, "torch": "2.14.1"},
               "paths": {"fast": numbers, "fp32": {**numbers, "classification": {**numbers["classification"], "balanced_accuracy": 0.733}}},
               "half_storage": {"fp32": half}, "kept_below": 4096,
               "mixed_storage": {"fp32": {**half, "max_change": 0.012, "moved_over_0.01": 2, "over_0.01_with_lesion_box_moved": 1}},
               "storage_mib": {"fp32": 46.1, "fp16": 23.1, "mixed": 23.7},
               "fast_vs_fp32": {**half, "images": 1498, "same_top_class": 0.975, "moved_over_0.05": 164, "max_change": 0.334}}
    card = _compute_paths(results)
    assert "| fp32 (everywhere else) | 0.7330 |" in card
    assert "0.066 (26 of 300 images over 0.01)" in card and "not measured" in card  # fp16 on the fast path was not run
    assert "same top class on 97.5% of the images" in card and "over 0.05 on 164 images" in card
    assert "0.012 (2 of 300 images over 0.01) |" in card
    assert "from 46.1 to 23.1 MiB" in card and "tensors under 4,096 values" in card and "to 23.7 MiB" in card
    assert "Of the images mixed storage moves by more than 0.01, 1 of 2 on the fp32 path had their lesion box moved" in card
    assert "AMX yes" in card
    assert _compute_paths(None) == ""
    table = compute_paths_table(results)
    assert "| fast (bf16 networks) | 0.7254 |" in table and "0.066, 26 of 300, 99.0%" in table
    assert "| 0.066, 26 of 300, 99.0% | 0.012, 2 of 300, 99.0% |" in table  # fp32 row: fp16, then mixed storage
    assert "mixed 23.7 MiB (mixed: tensors under 4096 values in fp32)" in table


def test_the_card_leaves_out_the_storage_columns_where_the_weights_are_fp16_already():
    numbers = {"classification": {"balanced_accuracy": 0.7254, "macro_auc": 0.9444, "ece": 0.0448},
               "classification_without_metadata": {"balanced_accuracy": 0.711},
               "segmentation": {"dice": 0.9476}}
    results = {"images": 1498, "command": "python -m train compute-paths", "half_storage": {}, "mixed_storage": {},
               "cpu": {"machine": "x86_64", "threads": 2, "bf16": True, "amx": True, "torch": "2.14.1"},
               "paths": {"fast": numbers}}
    card = _compute_paths(results)
    assert "| path | balanced accuracy | without metadata | macro AUC | ECE | Dice |\n|---|---|---|---|---|---|\n" in card
    assert "| fast (bf16 networks, where the hardware has bf16) | 0.7254 | 0.7110 | 0.9444 | 0.0448 | 0.9476 |\n" in card
    assert "fp16 storage" not in card and "not measured" not in card


def test_a_rerun_is_checked_against_numbers_from_the_same_kind_of_cpu():
    paths = {"cpu": {"bf16": True, "amx": True}, "paths": {"fast": "fast numbers", "fp32": "fp32 numbers"}}
    assert same_kind_of_cpu(paths, {"bf16": True, "amx": True}) == "fast numbers"
    assert same_kind_of_cpu(paths, {"bf16": False, "amx": False}) == "fp32 numbers"  # no bf16: the fp32 path runs
    assert same_kind_of_cpu(paths, {"bf16": True, "amx": False}) is None  # other bf16 kernels: not this reference
    assert same_kind_of_cpu(None, {"bf16": True, "amx": True}) is None
