"""The stability study's summary, on diagnoses whose changes are known."""

from types import SimpleNamespace

import pytest

from experiments.stability import changes


def diagnosis(probabilities, top, box):
    return SimpleNamespace(probabilities=probabilities, top_class=top, lesion_box=box)


def test_changes_summarise_each_images_largest_probability_change():
    before = [diagnosis([0.9, 0.1], "mel", [0, 0, 10, 10]), diagnosis([0.6, 0.4], "mel", [0, 0, 10, 10]),
              diagnosis([0.2, 0.8], "nv", [5, 5, 20, 20])]
    after = [diagnosis([0.9, 0.1], "mel", [0, 0, 10, 10]), diagnosis([0.4, 0.6], "nv", [1, 0, 11, 10]),
             diagnosis([0.23, 0.77], "nv", [5, 5, 20, 20])]
    summary = changes(before, after)
    assert summary["images"] == 3 and summary["largest"] == pytest.approx(0.2)
    assert summary["median"] == pytest.approx(0.03) and summary["over_0.05"] == 1
    assert summary["top_class_changed"] == pytest.approx(1 / 3) and summary["box_moved"] == 1
    assert summary["median_where_box_moved"] == pytest.approx(0.2)
    assert summary["median_where_box_stayed"] == pytest.approx(0.015)
