"""The preset comparison's budget: the small run's own epoch times, and clear errors."""

import pytest

from experiments.tiny_vs_small import TinyVsSmallConfig, budget_seconds


def test_the_budget_is_the_small_runs_first_epochs():
    history = [{"seconds": 300.0}, {"seconds": 250.5}, {"seconds": 400.0}]
    assert budget_seconds(history, 2) == 550.5
    assert budget_seconds(history, 3) == 950.5
    with pytest.raises(ValueError, match="fewer than --small_epochs=4"):
        budget_seconds(history, 4)


def test_a_missing_small_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished classifier run"):
        TinyVsSmallConfig(small_run=str(tmp_path))
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="at least 1"):
        TinyVsSmallConfig(small_run=str(tmp_path), small_epochs=0)
