"""The timers the speed measurements share: the median wall time of a call after warm-up calls.

The median (not the mean) because this machine also runs other work: one slow call should not move it.
Things that are compared with each other are timed interleaved (:func:`interleaved_medians`), so a spell
of load on the machine slows each of them alike instead of the one that happened to run then.
"""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls of ``fn()``, after ``warmup`` calls that are not timed."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(calls: dict, repeats: int, warmup: int = 1) -> dict:
    """Median seconds of each of ``calls`` (name → function), timed in turn within each of ``repeats`` rounds,
    after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
