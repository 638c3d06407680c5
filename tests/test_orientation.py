"""The orientation study: its eight orientations, what it compares, and its report (the 8-view model: test_flips.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dermfuse.ui.views import orientation_lines
from experiments.orientation import ORIENTATIONS, correlation, heatmap_agreement, mask_agreement, same_everywhere, turned
from experiments.report_sections import orientation_section

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "orientation.json"


def test_the_eight_orientations_are_distinct_and_each_way_back_undoes_its_own():
    frame = np.arange(3 * 4 * 2).reshape(3, 4, 2)  # not square, and no symmetry: every orientation differs
    made = {name: orient(frame) for name, (orient, _) in ORIENTATIONS.items()}
    assert len({(m.shape, m.tobytes()) for m in map(np.ascontiguousarray, made.values())}) == 8
    for name, (_, back) in ORIENTATIONS.items():
        assert np.array_equal(back(made[name]), frame), name
    assert made["quarter turn left"].shape[:2] == (4, 3) and made["mirrored left-right"].shape[:2] == (3, 4)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    assert np.array_equal(turned("quarter turn right")(image), np.asarray(image.transpose(Image.Transpose.ROTATE_270)))
    assert np.array_equal(turned("mirrored on the diagonal")(image), np.asarray(image.transpose(Image.Transpose.TRANSPOSE)))
    assert turned("half turn")(image).flags["C_CONTIGUOUS"]


def test_same_everywhere_counts_images_whose_top_class_never_changes():
    assert same_everywhere({"as it is": [0, 1, 2, 3], "half turn": [0, 1, 0, 3], "mirrored left-right": [0, 2, 2, 3]}) == 0.5
    assert same_everywhere({"as it is": [4, 4]}) == 1.0


def _result(heat: np.ndarray, mask: np.ndarray) -> SimpleNamespace:
    focus = float(heat[mask].sum() / heat.sum())
    return SimpleNamespace(heatmaps={"image": heat, "lesion": heat}, lesion_focus={"image": focus, "lesion": focus},
                           mask=mask)


def test_a_map_that_turned_with_the_image_agrees_and_one_that_did_not_is_caught():
    rng = np.random.default_rng(1)
    heat, mask = rng.random((16, 12)), np.zeros((16, 12), bool)
    mask[2:9, 3:7] = True
    orient, back = ORIENTATIONS["quarter turn left"]
    as_it_is = [_result(heat, mask)]
    agreed = heatmap_agreement([_result(orient(heat), orient(mask))], as_it_is, back)
    assert agreed["image"]["median_correlation"] == pytest.approx(1.0) and agreed["lesion"]["median_focus_change"] == 0
    stayed = heatmap_agreement([_result(heat[::-1, ::-1].T, orient(mask))], as_it_is, back)  # a map that did not turn
    assert stayed["image"]["median_correlation"] < 0.5 and stayed["image"]["median_focus_change"] > 0
    assert correlation(np.ones(4), np.arange(4.0)) is None  # a flat map has no correlation
    assert mask_agreement([_result(orient(heat), orient(mask))], as_it_is, back) == 1.0
    assert mask_agreement([_result(orient(heat), orient(np.roll(mask, 3, axis=0)))], as_it_is, back) < 0.7


def test_the_section_reports_every_orientation():
    row = {"balanced_accuracy": 0.7, "macro_auc": 0.93, "melanoma_auc": None, "ece": 0.05, "flagged": 0.01}
    turned_row = {**row, "median_change": 0.04, "top_class_changed": 0.123, "mask_agreement": 0.987}
    maps = {"image": {"images": 100, "median_correlation": 0.36, "median_focus_change": 0.12},
            "lesion": {"images": 100, "median_correlation": None, "median_focus_change": None}}
    report = {"validation_images": 1500, "path": "fast", "command": "python -m experiments.orientation", "minutes": 5.0,
              "orientations": {"as it is": row, "half turn": turned_row}, "same_top_class_in_all": 0.736,
              "heatmaps": {"images": 100, "orientations": {"half turn": maps}},
              "ph2": {"images": 140, "melanomas": 28, "same_top_class_in_all": 0.686,
                      "rows": {"as it is": {"melanoma_auc": 0.815}, "half turn": {"melanoma_auc": 0.836, "median_change": 0.067,
                                                                                  "top_class_changed": 0.157}}}}
    text = orientation_section(report, Path("docs/results/orientation.json"))
    assert "| half turn | 0.700 | 0.930 | — | 0.050 | 1.0 % | 0.040 | 12.3 % | 0.987 |" in text
    assert "**73.6 %**" in text and "| half turn | 0.360 | 0.120 | — | — |" in text
    assert "| half turn | 0.836 | 0.067 | 15.7 % |" in text and "68.6 %" in text
    assert "python -m experiments.orientation" in orientation_section(None, Path("docs/results/orientation.json"))


def test_the_committed_study_is_of_the_shipped_model_in_all_eight_orientations():
    report = json.loads(RESULTS.read_text())
    assert list(report["orientations"]) == list(ORIENTATIONS) and list(report["ph2"]["rows"]) == list(ORIENTATIONS)
    assert list(report["heatmaps"]["orientations"]) == list(ORIENTATIONS)[1:]
    assert report["command"] == "python -m experiments.orientation" and report["validation_images"] == 1500
    changed = [row["top_class_changed"] for row in report["orientations"].values() if "top_class_changed" in row]
    readme = " ".join((RESULTS.parents[2] / "README.md").read_text(encoding="utf-8").split())  # lines joined
    assert f"the top class changed on {100 * min(changed):.1f}–{100 * max(changed):.1f} % of them per orientation" in readme
    assert f"only {100 * report['same_top_class_in_all']:.1f} % kept one top class in all eight" in readme
    correlations = [stream["median_correlation"] for streams in report["heatmaps"]["orientations"].values()
                    for stream in streams.values()]
    said = f"at a median of only {min(correlations):.2f}–{max(correlations):.2f}"
    assert said in readme and said in orientation_lines(SimpleNamespace(heatmap_methods={"image": "Grad-CAM"}, model={}))[0]
