"""No "nan" anywhere a reader looks, on real dermoscopy: every shipped model explains real PH2 and HAM10000 images.

A Grad-CAM map that is all zero once showed "nan %" in "Where the model looked" (66 of 140 PH2 images
for the phantom model). This runs the explain path on real images and reads every string a user
gets: the page's words, the JSON (strict: NaN is not JSON), the case sheet's words, the CLI's table
and its overlay figure's words. By default a handful of images per source (CI time); with
``DERMFUSE_FULL_SWEEP=1`` all 140 PH2 images and 200 HAM10000 test images.
Needs ``../shared/data``; skipped with the reason when it is absent.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest

from dermfuse import render
from dermfuse.pipeline import Case, DermFusePipeline
from dermfuse.predict import predict_all, results_table
from dermfuse.sources import CHECKPOINTS, DEFAULT_MODEL, shipped_models
from dermfuse.ui import report, views

from conftest import SHARED_DATA

FULL = os.environ.get("DERMFUSE_FULL_SWEEP") == "1"
PH2_IMAGES, HAM10000_IMAGES = (140, 200) if FULL else (10, 10)
NAN = re.compile(r"\bnan\b|\binf\b", re.IGNORECASE)  # "malignant" holds "nan": whole words only

pytestmark = pytest.mark.skipif(not shipped_models(), reason=f"no checkpoints in {CHECKPOINTS}")


@pytest.fixture(scope="module")
def real_cases(real_images) -> list[Case]:
    """Every ⌈140/n⌉-th PH2 image and every ⌈test/n⌉-th image of the real model's HAM10000 test split."""
    ph2 = pd.read_csv(real_images / "labels.csv")
    chosen = ph2.iloc[np.linspace(0, len(ph2) - 1, PH2_IMAGES).round().astype(int)]
    cases = [Case(next((real_images / "images").glob(f"{name}.*")), image_id=name) for name in chosen["image"]]
    folder = SHARED_DATA / "HAM10000" / "HAM10000_images"
    splits = CHECKPOINTS / DEFAULT_MODEL / "splits.csv"
    if not folder.is_dir() or not splits.is_file():
        pytest.skip(f"the HAM10000 images ({folder}) or the real model's split ({splits}) are absent")
    table = pd.read_csv(splits)
    test = table[(table["source"] == "ham10000") & (table["split"] == "test")].sort_values("image_id")
    test = test.iloc[np.linspace(0, len(test) - 1, HAM10000_IMAGES).round().astype(int)]
    cases += [Case(folder / f"{r.image_id}.jpg", r.age, r.sex, r.site, image_id=r.image_id) for r in test.itertuples()]
    return cases


def words_a_reader_gets(diagnosis) -> list[str]:
    """Every string the app, the JSON, the case sheet and the CLI make of one diagnosis."""
    image, small = views.shrink(diagnosis.image, diagnosis)
    views.pictures(image, small)  # draws without error
    overlay = render.overlay_sheet(diagnosis)
    return [
        views.reading(small), views.warnings_text(small), " ".join(views.score_label(diagnosis) or {}),  # None when not assessable
        json.dumps(views.result_json(diagnosis), allow_nan=False),  # raises on NaN / inf
        json.dumps(diagnosis.to_dict(), allow_nan=False),  # the CLI's predictions.json
        report.sheet_text(small),
        results_table([diagnosis]).to_csv(index=False),  # the CLI's predictions.csv
        *[text.get_text() for text in overlay.texts],
        *[axis.get_title() + " " + axis.get_xlabel() for axis in overlay.axes],
    ]


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(shipped_models()))
def test_no_nan_in_any_output_on_real_images(model, real_cases):
    pipeline = DermFusePipeline.from_pretrained(shipped_models()[model])
    results = predict_all(pipeline, real_cases, batch_size=16, explain=True, progress=False)
    fallbacks = 0
    for case, diagnosis in zip(real_cases, results):
        for text in words_a_reader_gets(diagnosis):
            assert not NAN.search(text), (model, case.image_id, NAN.search(text), text[:300])
        for stream, heat in diagnosis.heatmaps.items():  # every map shown has mass to share out
            assert np.isfinite(heat).all() and heat.max() > 0, (model, case.image_id, stream)
        assert set(diagnosis.heatmaps) == set(diagnosis.heatmap_methods)
        assert all(v is None or math.isfinite(v) for v in (diagnosis.lesion_focus or {}).values())
        fallbacks += len(diagnosis.heatmap_notes)
    print(f"{model}: {len(results)} real images, {fallbacks} maps from the fallback method")
