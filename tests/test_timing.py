"""The benchmarks' timers: the interleaved one times what it compares in turn, so load falls on both sides."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from timing import interleaved_medians  # noqa: E402


def test_interleaved_medians_time_each_call_in_turn_after_untimed_warmup(monkeypatch):
    import timing

    clock = iter(range(1000))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    order = []
    medians = interleaved_medians({"fast": lambda: order.append("fast"), "eager": lambda: order.append("eager")},
                                  repeats=3, warmup=1)
    assert order == ["fast", "eager"] * 4  # one warm-up round, then three timed rounds, alternating
    assert medians == {"fast": 1, "eager": 1}  # each timed call spans one tick of the fake clock
