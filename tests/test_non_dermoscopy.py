"""The gate's negatives: assembled from installed packages only, grouped by picture, the same every time."""

from __future__ import annotations

import numpy as np

from experiments.non_dermoscopy import SOURCES, non_dermoscopy_set


def test_every_source_is_there_with_rgb_images_grouped_by_picture_and_reproducible():
    first, again = non_dermoscopy_set(seed=0, phantoms=7), non_dermoscopy_set(seed=0, phantoms=7)
    assert {source for source, _, _ in first} == set(SOURCES)
    assert all(image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and min(image.shape[:2]) >= 32
               for _, _, image in first)
    groups = {}
    for source, group, _ in first:
        groups.setdefault(group, set()).add(source)
    assert all(len(sources) == 1 for sources in groups.values())  # a picture and its crops: one source
    assert len(groups) < len(first)  # crops share their picture's group
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(first, again))
