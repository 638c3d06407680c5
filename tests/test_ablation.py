"""``python -m train ablation`` end to end on a few phantoms: variants, seeds, the shortcut conditions, the cache."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dermfuse import DermFuse
from experiments import ablation
from experiments.ablation import AblationConfig, run_ablation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shortcut_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("shortcut")
    patch = pytest.MonkeyPatch()
    patch.setitem(ablation.QUICK, "classifier", dict(epochs=1, batch_size=16))
    patch.setitem(ablation.QUICK, "segmenter", dict(epochs=4, batch_size=8, time_limit=1.0))  # finds the lesions
    config = AblationConfig(variants="baseline,full", seeds="0,1", quick=True, phantoms=140, shortcut="mel:0.9",
                            out=str(work / "runs"), report=str(work / "report"), workers=0, progress=False)  # fmt: skip
    patch.setitem(ablation.QUICK, "seeds", "0,1")  # quick means one seed; two here, so the summary has a spread
    path = run_ablation(config)
    yield json.loads(path.read_text()), work, config
    patch.undo()


def test_every_variant_and_seed_is_trained_as_that_variant_and_scored_under_each_condition(shortcut_run):
    report, work, _ = shortcut_run
    assert report["conditions"] == ["present", "absent", "reversed"]
    assert [(r["variant"], r["seed"]) for r in report["runs"]] == [("baseline", 0), ("baseline", 1), ("full", 0), ("full", 1)]
    for run in report["runs"]:
        model = DermFuse.from_pretrained(f"{run['run']}/model")
        assert model.classifier.use_lesion_stream == (run["variant"] == "full")
        assert model.classifier.use_metadata == (run["variant"] == "full")
        streams = set(run["test"]["present"]["lesion_focus"])
        assert streams == ({"image", "lesion"} if run["variant"] == "full" else {"image"})
        for condition in report["conditions"]:
            test = run["test"][condition]
            assert 0 <= test["balanced_accuracy"] <= 1 and all(0 <= f <= 1 for f in test["lesion_focus"].values())
    baseline = report["summary"]["baseline"]["present"]["balanced_accuracy"]
    assert baseline["n"] == 2 and baseline["std"] >= 0
    assert set(report["figures"]) == {"shortcut_bars.png", "shortcut_cam_gallery.png"}
    assert all((work / "report" / figure).stat().st_size > 10_000 for figure in report["figures"])


def test_the_test_renderings_differ_only_in_the_planted_ink(shortcut_run):
    _, work, _ = shortcut_run
    truth = {mode: pd.read_csv(work / "runs" / "phantoms" / mode / "phantom_truth.csv") for mode in ("present", "absent", "reversed")}
    assert not truth["absent"]["shortcut_ink"].any()
    labels = pd.read_csv(work / "runs" / "phantoms" / "reversed" / "HAM10000_metadata.csv")["dx"]
    assert (truth["reversed"]["shortcut_ink"] == (labels != "mel")).all()  # reversed at full strength
    assert (truth["present"]["area_fraction"] == truth["reversed"]["area_fraction"]).all()  # the same lesions


def test_a_second_call_reuses_the_finished_runs(shortcut_run):
    report, work, config = shortcut_run
    stamps = {r["run"]: (work / r["run"] / "model" / "model.safetensors").stat().st_mtime_ns for r in report["runs"]}
    again = json.loads(run_ablation(config).read_text())
    assert {r["run"]: (work / r["run"] / "model" / "model.safetensors").stat().st_mtime_ns for r in again["runs"]} == stamps
    assert again["summary"] == report["summary"]


def test_bad_settings_name_the_valid_choices():
    with pytest.raises(ValueError, match="baseline, lesion, metadata, full, concat"):
        AblationConfig(variants="baseline,dual")
    with pytest.raises(ValueError, match="comma-separated integers"):
        AblationConfig(seeds="0,one")
    with pytest.raises(ValueError, match="shortcut"):
        AblationConfig(shortcut="mel")
