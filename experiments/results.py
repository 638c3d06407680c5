"""Re-run every experiment behind ``docs/RESULTS.md`` and write it from the JSON they leave: no number typed by hand.

    .venv/bin/python experiments/results.py                  # only write docs/RESULTS.md from docs/results/*.json
    .venv/bin/python experiments/results.py --run            # re-run everything (≈ 100 min on a 2-core CPU), then write
    .venv/bin/python experiments/results.py --run --reuse    # keep finished runs and benchmark JSON; do only what is missing
    .venv/bin/python experiments/results.py --run --quick    # one seed, short schedules (< 15 min): a smoke run, not evidence

``--run`` runs, in this order, each as its own command: the real-image studies first (the calibration
stickers, then ``python -m train real-ablation``: the paper's claims on HAM10000, ≈ 30 min of its own; then the
shipped real-data model's lesion focus, ABCD validation, skin-tone bands, operating points and speed), then
the inference and training benchmarks, the independent logistic-regression check, the real-metadata
benchmark, the phantom ablation and the shortcut experiment (the phantom studies: the page's teaching
appendix). Their JSON and figures go to ``docs/results/`` (``--quick``: ``runs/results-quick/``, with its own RESULTS.md), the training runs
to ``runs/results/`` (``runs/results-quick/work/``). ``run.json`` records each step's command and time.

The real-data (HAM10000), demo and PH2 sections read the committed checkpoints' ``metrics.json``: those
models are made by ``python -m train ham10000``, ``python -m train demo`` (≈ 15 min) and
``python -m train real`` (≈ 45 min), not re-trained here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dermfuse.sources import CHECKPOINTS, DEMO_MODEL  # noqa: E402
from experiments.report_sections import (  # noqa: E402
    LIMITS, ablation_section, claims_section, criteria_section, framing_section, gpu_section, ham10000_section, inference_section, load,
    metadata_section, other_clinics_section, phantom_section, preset_comparison_section, real_section, shortcut_section, skin_tone_section,
    artefacts_section, bare_skin_section, capture_section, dark_frame_section, focus_section, orientation_section, resolution_section, stability_section,
    training_section, trust_section,
)  # fmt: skip
from experiments.ham10000 import NAME as HAM10000_MODEL  # noqa: E402
from experiments.real_sections import (  # noqa: E402
    real_ablation_section, real_artefact_section, real_claims_section, real_focus_section, stickers_section,
)  # fmt: skip
from experiments.real import NAME as REAL_MODEL  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
HAM10000_SPEED = Path("docs/results/inference_small_ham10000.json")  # bench_inference.py --model on the shipped model
GATE = Path("docs/results/gate.json")  # python -m train gate
LESION_FOCUS = Path("docs/results/lesion_focus.json")  # python -m experiments.lesion_focus
SKIN_TONE, OPERATING_POINTS = Path("docs/results/skin_tone.json"), Path("docs/results/operating_points.json")  # python -m train skin-tone / operating-points
CRITERIA = Path("docs/results/criteria.json")  # python -m experiments.criteria
FRAMING = Path("docs/results/framing.json")  # python -m experiments.framing
OTHER_CLINICS = Path("docs/results/other_clinics.json")  # python -m experiments.other_clinics
STABILITY = Path("docs/results/stability.json")  # python -m experiments.stability
RESOLUTION = Path("docs/results/resolution.json")  # python -m experiments.resolution
FOCUS = Path("docs/results/focus.json")  # python -m experiments.focus
BARE_SKIN = Path("docs/results/bare_skin.json")  # python -m experiments.bare_skin
DARK_FRAME = Path("docs/results/dark_frame.json")  # python -m experiments.dark_frame
CAPTURE = Path("docs/results/capture.json")  # python -m experiments.capture
ORIENTATION = Path("docs/results/orientation.json")  # python -m experiments.orientation
ARTEFACTS = Path("docs/results/artefacts.json")  # python -m experiments.artefacts
PRESET_COMPARISON = Path("docs/results/tiny_vs_small.json")  # python -m experiments.tiny_vs_small (needs the ham10000 runs)
GPU_RESULTS = Path("docs/results/gpu")  # measured by hand on a lent GPU: read, never re-run here
SHORTCUT = "mel:0.9"
FILES = dict(inference="inference.json", training="training.json", independent_lr="independent_lr.json",
             metadata="metadata_benchmark.json", ablation="ablation.json", shortcut="shortcut.json", run="run.json",
             real_ablation="real_ablation.json", stickers="stickers.json", criteria="criteria.json", lesion_focus="lesion_focus.json",
             skin_tone="skin_tone.json", operating_points="operating_points.json", framing="framing.json",
             stability="stability.json", other_clinics="other_clinics.json", resolution="resolution.json",
             focus="focus.json", bare_skin="bare_skin.json", dark_frame="dark_frame.json", orientation="orientation.json", artefacts="artefacts.json",
             inference_ham10000="inference_small_ham10000.json")  # fmt: skip
REAL_QUICK = ["--limit=300", "--seeds=0", "--epochs=1", "--focus_images=50"]  # a smoke run of the real study


def steps(results: Path, work: Path, quick: bool, reuse: bool) -> list[tuple[str, list[str]]]:
    """(name, command) for each experiment, writing into ``results`` (JSON, figures) and ``work`` (runs),
    both relative to the repository root, where every step runs."""
    python = sys.executable
    ablation = [python, "-m", "train", "ablation", f"--report={results}", "--progress=false"]
    ablation += ["--quick"] if quick else []
    ablation += [] if reuse else ["--fresh"]
    real = [python, "-m", "train", "real-ablation", f"--report={results}", f"--out={work / 'real_ablation'}", "--progress=false"]
    real += REAL_QUICK if quick else []
    real += [] if reuse else ["--fresh"]
    return [
        ("stickers", [python, "-m", "experiments.stickers", "--json", str(results / FILES["stickers"]),
                      *(["--limit", "300"] if quick else [])]),
        ("real_ablation", real),
        # The shipped real-data model's own studies (they also write its config and card where they fit something).
        ("lesion_focus", [python, "-m", "experiments.lesion_focus", "--json", str(results / FILES["lesion_focus"]),
                          *(["--limit", "100"] if quick else [])]),
        ("criteria", [python, "-m", "experiments.criteria", "--json", str(results / FILES["criteria"]),
                      *(["--limit", "100"] if quick else [])]),
        ("framing", [python, "-m", "experiments.framing", f"--out={results / FILES['framing']}"]),
        ("stability", [python, "-m", "experiments.stability", f"--out={results / FILES['stability']}"]),
        ("other_clinics", [python, "-m", "experiments.other_clinics", f"--out={results / FILES['other_clinics']}"]),
        ("resolution", [python, "-m", "experiments.resolution", f"--out={results / FILES['resolution']}"]),
        ("focus", [python, "-m", "experiments.focus", f"--out={results / FILES['focus']}"]),
        ("bare_skin", [python, "-m", "experiments.bare_skin", f"--out={results / FILES['bare_skin']}"]),
        ("dark_frame", [python, "-m", "experiments.dark_frame", f"--out={results / FILES['dark_frame']}"]),
        ("orientation", [python, "-m", "experiments.orientation", f"--out={results / FILES['orientation']}"]),
        ("artefacts", [python, "-m", "experiments.artefacts", f"--out={results / FILES['artefacts']}"]),
        ("skin_tone", [python, "-m", "train", "skin-tone", f"--out={results / FILES['skin_tone']}"]),
        ("operating_points", [python, "-m", "train", "operating-points", f"--out={results / FILES['operating_points']}"]),
        ("inference_ham10000", [python, "benchmarks/bench_inference.py", "--model", f"checkpoints/{HAM10000_MODEL}",
                                "--repeats", "2" if quick else "7", "--json", str(results / FILES["inference_ham10000"])]),
        ("inference", [python, "benchmarks/bench_inference.py", "--preset", "tiny" if quick else "paper", "--repeats", "2" if quick else "5",
                       "--json", str(results / FILES["inference"])]),
        ("training", [python, "benchmarks/bench_train.py", "--steps", "1" if quick else "3", "--warmup", "1" if quick else "2",
                      "--presets", *(["tiny"] if quick else ["tiny", "paper"]), "--json", str(results / FILES["training"])]),
        ("independent_lr", [python, "experiments/independent_lr.py", "--data", os.path.relpath(SHARED_DATA, ROOT),
                            "--json", str(results / FILES["independent_lr"])]),
        ("metadata", [python, "-m", "train", "metadata-benchmark", "--data", os.path.relpath(SHARED_DATA, ROOT), "--out", str(results),
                      *(["--epochs", "3", "--no-isic2019"] if quick else [])]),
        ("ablation", [*ablation, f"--out={work / 'ablation'}"]),
        ("shortcut", [*ablation, f"--out={work / 'shortcut'}", f"--shortcut={SHORTCUT}"]),
    ]  # fmt: skip


def run_all(results: Path, work: Path, quick: bool, reuse: bool) -> dict:
    """Run each step (a benchmark whose JSON exists is skipped with ``--reuse``); return the run record."""
    (ROOT / results).mkdir(parents=True, exist_ok=True)
    record = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": quick, "reuse": reuse,
              "machine": machine(), "steps": {}}  # fmt: skip
    started = time.monotonic()
    for name, command in steps(results, work, quick, reuse):
        reusable = name not in ("ablation", "shortcut", "real_ablation") and (ROOT / results / FILES[name]).is_file()  # these reuse per run
        shown = " ".join(Path(c).name if c == sys.executable else c for c in command)
        if reuse and reusable:
            print(f"== {name}: kept {results / FILES[name]}", flush=True)
            record["steps"][name] = {"command": shown, "skipped": True}
            continue
        print(f"== {name}: {shown}", flush=True)
        t0 = time.monotonic()
        completed = subprocess.run(command, cwd=ROOT)
        record["steps"][name] = {"command": shown, "seconds": round(time.monotonic() - t0, 1), "exit_code": completed.returncode}
        if completed.returncode:
            print(f"== {name} failed (exit code {completed.returncode}); the other steps go on", file=sys.stderr, flush=True)
    record["total_minutes"] = round((time.monotonic() - started) / 60, 1)
    (ROOT / results / FILES["run"]).write_text(json.dumps(record, indent=1))
    return record


def machine() -> str:
    import torch

    return f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPU cores, torch {torch.__version__}"


APPENDIX = """# Appendix: the phantom studies (teaching)

The same experiments on synthetic phantoms, whose truth is known: they show what each measurement can detect
(a planted shortcut, a stream that helps) before it is asked of real images. They are not evidence about patients.
"""


def write_results_page(results: Path, out: Path) -> Path:
    """RESULTS.md from the JSON in ``results`` and the committed checkpoints."""
    def rel(path: Path) -> Path:
        return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path

    paths = {key: rel(results / name) for key, name in FILES.items()}
    data = {key: load(ROOT / path) for key, path in paths.items()}
    demo_path = rel(CHECKPOINTS / DEMO_MODEL / "metrics.json")
    real_path = rel(CHECKPOINTS / REAL_MODEL / "metrics.json")
    ham10000_path = rel(CHECKPOINTS / HAM10000_MODEL / "metrics.json")
    record = data["run"]
    header = (f"Written by `python experiments/results.py` on {datetime.now(timezone.utc):%Y-%m-%d} from the JSON files each "
              "section names.")  # fmt: skip
    if record:
        mode = " --quick" if record["quick"] else ""
        ran = [f"{name} {step['seconds'] / 60:.1f} min" for name, step in record["steps"].items() if "seconds" in step]
        kept = [name for name, step in record["steps"].items() if step.get("skipped")]
        header += (f" The experiments were re-run by `python experiments/results.py --run{mode}` (started {record['started']}) on "
                   f"{record['machine']}, CPU only, in **{record['total_minutes']} minutes**: {', '.join(ran)}"
                   + (f"; kept from an earlier run: {', '.join(kept)}" if kept else "") + f". Source `{paths['run']}`.")  # fmt: skip
        if record["quick"]:
            header += "\n\n**Quick mode: one seed and short schedules. These numbers check the machinery; they are not evidence.**"
    docs = out.parent
    sections = [
        "# dermfuse results\n",
        header + "\n",
        ham10000_section(load(ROOT / ham10000_path), ham10000_path, load(ROOT / HAM10000_SPEED), HAM10000_SPEED),
        preset_comparison_section(load(ROOT / PRESET_COMPARISON), PRESET_COMPARISON),
        framing_section(load(ROOT / FRAMING), FRAMING),
        other_clinics_section(load(ROOT / OTHER_CLINICS), OTHER_CLINICS),
        stability_section(load(ROOT / STABILITY), STABILITY),
        resolution_section(load(ROOT / RESOLUTION), RESOLUTION),
        focus_section(load(ROOT / FOCUS), FOCUS),
        bare_skin_section(load(ROOT / BARE_SKIN), BARE_SKIN),
        dark_frame_section(load(ROOT / DARK_FRAME), DARK_FRAME),
        capture_section(load(ROOT / CAPTURE), CAPTURE),
        orientation_section(load(ROOT / ORIENTATION), ORIENTATION),
        artefacts_section(load(ROOT / ARTEFACTS), ARTEFACTS),
        trust_section(load(ROOT / GATE), GATE, load(ROOT / LESION_FOCUS), LESION_FOCUS),
        skin_tone_section(load(ROOT / SKIN_TONE), SKIN_TONE, load(ROOT / OPERATING_POINTS), OPERATING_POINTS),
        criteria_section(load(ROOT / CRITERIA), CRITERIA),
        real_claims_section(data["real_ablation"], paths["real_ablation"], data["stickers"], paths["stickers"]),
        real_ablation_section(data["real_ablation"], paths["real_ablation"], docs),
        real_focus_section(data["real_ablation"], paths["real_ablation"]),
        real_artefact_section(data["real_ablation"], paths["real_ablation"], docs),
        stickers_section(data["stickers"], paths["stickers"]),
        real_section(load(ROOT / real_path), real_path, docs),
        metadata_section(data["metadata"], paths["metadata"], data["independent_lr"], paths["independent_lr"]),
        inference_section(data["inference"], paths["inference"]),
        training_section(data["training"], paths["training"]),
        gpu_section(load(ROOT / GPU_RESULTS / "training_batch32.json"), load(ROOT / GPU_RESULTS / "training_batch128.json"),
                    load(ROOT / GPU_RESULTS / "ablation_paper_quick.json"), GPU_RESULTS),
        APPENDIX,
        claims_section(data["ablation"], data["shortcut"], data["metadata"]),
        ablation_section(data["ablation"], paths["ablation"], docs),
        shortcut_section(data["shortcut"], paths["shortcut"], docs),
        phantom_section(load(ROOT / demo_path), demo_path),
        LIMITS,
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(sections), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="re-run the experiments first (else only write the report)")
    parser.add_argument("--quick", action="store_true", help="one seed, short schedules, into runs/results-quick/")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs and benchmark JSON; do what is missing")
    args = parser.parse_args(argv)
    # Relative to the repository root, where every step runs: the JSON then names portable paths.
    results, work = (Path("runs/results-quick"), Path("runs/results-quick/work")) if args.quick else (Path("docs/results"), Path("runs/results"))
    failed = []
    if args.run:
        if not (SHARED_DATA / "HAM10000_metadata.csv").is_file():
            raise SystemExit(f"{SHARED_DATA}/HAM10000_metadata.csv not found: the metadata steps need ../shared/data beside the repository")
        record = run_all(results, work, args.quick, args.reuse)
        failed = [name for name, step in record["steps"].items() if step.get("exit_code")]
        print(f"ran in {record['total_minutes']} minutes" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    print(f"wrote {write_results_page(ROOT / results, ROOT / (results / 'RESULTS.md' if args.quick else 'docs/RESULTS.md'))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
