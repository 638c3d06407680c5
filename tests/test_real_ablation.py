"""``python -m train real-ablation`` end to end on a few real HAM10000 images: variants, seeds, metadata on and off,
lesion focus against the expert masks, the artefact conditions, the figures, and reuse of finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermfuse import DermFuse
from dermfuse.data.artefacts import templates_folder
from experiments.real_ablation import RealAblationConfig, run_real_ablation
from experiments.real_artefacts import CONDITIONS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory, shared_data):
    if not (shared_data / "HAM10000" / "HAM10000_segmentations_lesion_tschandl").is_dir():
        pytest.skip(f"real HAM10000 images and expert masks not found at {shared_data / 'HAM10000'} (they live beside the repository)")
    if not (templates_folder() / "meta.json").is_file():
        pytest.skip(f"the artefact templates are not at {templates_folder()} (they live beside the repository)")
    work = tmp_path_factory.mktemp("real_ablation")
    config = RealAblationConfig(data=str(shared_data), variants="baseline,full", seeds="0,1", epochs=1, batch_size=16,
                                limit=48, focus_images=8, artefact_rate=1.0, masks_from="", out=str(work / "runs"),
                                report=str(work / "report"), progress=False)  # fmt: skip
    path = run_real_ablation(config)
    return json.loads(path.read_text()), work, config


def test_every_variant_and_seed_is_trained_as_that_variant_and_scored(study):
    report, _, _ = study
    assert report["smoke"] and report["data"]["splits"] == {"train": 48, "val": 24, "test": 24}
    assert [(r["variant"], r["seed"]) for r in report["runs"]] == [("baseline", 0), ("baseline", 1), ("full", 0), ("full", 1)]
    for run in report["runs"]:
        model = DermFuse.from_pretrained(f"{run['run']}/model")
        assert model.classifier.use_lesion_stream == model.classifier.use_metadata == (run["variant"] == "full")
        test = run["test"]["clean"]
        for setting in ("with_metadata", "without_metadata"):
            assert 0 <= test[setting]["balanced_accuracy"] <= 1 and test[setting]["macro_auc"] is not None
            assert set(test[setting]["per_class"]) == set(report["classes"])
        focus = test["lesion_focus"]
        assert set(focus) == ({"image", "lesion"} if run["variant"] == "full" else {"image"})
        values = [v for s in focus for v in focus[s]["values"] if v is not None]
        assert len(values) >= 8 and all(0 <= v <= 1 for v in values) and len(set(values)) > 1
    summary = report["summary"]["full"]["clean"]
    assert summary["with_metadata"]["balanced_accuracy"]["n"] == 2 and summary["with_metadata"]["balanced_accuracy"]["std"] >= 0
    assert summary["lesion_focus"]["lesion"]["pooled"]["images"] >= 8 and len(summary["lesion_focus"]["image"]["pooled"]["histogram"]) == 10
    assert report["budget"]["trainable_parameters"]["full"] > report["budget"]["trainable_parameters"]["baseline"] > 0
    assert report["metadata_at_test_time"]["full"]["n"] == 2


def test_the_artefact_conditions_differ_only_where_the_artefact_is(study):
    report, _, _ = study
    artefacts = report["artefacts"]
    assert artefacts["conditions"] == list(CONDITIONS) and artefacts["rate"] == 1.0
    assert artefacts["train_with_artefact"] == artefacts["train_melanomas"] > 0  # rate 1: every training melanoma
    assert "Katsch" in artefacts["templates"]["citation"]
    for run in artefacts["runs"]:
        scores = {c: run["test"][c]["with_metadata"]["melanoma_score"] for c in CONDITIONS}
        # reversed leaves the melanomas clean; biased (rate 1) leaves the others clean
        assert scores["reversed"]["melanomas"] == pytest.approx(scores["clean"]["melanomas"])
        assert scores["biased"]["others"] == pytest.approx(scores["clean"]["others"])
        assert scores["all"]["others"] == pytest.approx(scores["reversed"]["others"])
        assert scores["all"]["others"] != pytest.approx(scores["clean"]["others"], abs=1e-7)


def test_the_figures_are_written(study):
    report, work, _ = study
    assert set(report["figures"]) == {"real_ablation_bars.png"}
    assert all((work / "report" / figure).stat().st_size > 10_000 for figure in report["figures"])
    # the gallery shows HAM10000 images: it is written to the run folder, outside the committed report
    gallery = Path(report["gallery"])
    assert gallery.name == "real_artefact_gallery.png" and gallery.stat().st_size > 10_000
    assert not (work / "report" / gallery.name).exists()


def test_a_second_call_reuses_the_finished_runs(study):
    report, work, config = study
    runs = report["runs"] + report["artefacts"]["runs"]
    stamps = {r["run"]: (work / r["run"] / "model" / "model.safetensors").stat().st_mtime_ns for r in runs}
    again = json.loads(run_real_ablation(config).read_text())
    assert again["runs_reused"] == len(runs)
    assert {r["run"]: (work / r["run"] / "model" / "model.safetensors").stat().st_mtime_ns for r in runs} == stamps
    assert again["summary"] == report["summary"] and again["artefacts"]["summary"] == report["artefacts"]["summary"]


def test_bad_settings_name_the_valid_choices():
    with pytest.raises(ValueError, match="baseline, lesion, metadata, full, concat"):
        RealAblationConfig(variants="baseline,dual")
    with pytest.raises(ValueError, match="comma-separated integers"):
        RealAblationConfig(seeds="zero")
    with pytest.raises(ValueError, match="artefact_rate"):
        RealAblationConfig(artefact_rate=0)
