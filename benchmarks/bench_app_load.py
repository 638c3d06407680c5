"""Load test of the running app: N concurrent ``gradio_client`` clients × M ``/predict`` requests each.

    .venv/bin/python benchmarks/bench_app_load.py --clients 8 --requests 10

Starts ``python app.py`` on a free local port (the model: ``--model``, else ``$DERMFUSE_MODEL``,
else the demo checkpoint, else a tiny untrained stand-in), then:

1. start-up: seconds from starting the process to the first answered ``/predict``;
2. warm-up: 10 sequential requests, then the server's resident memory (the baseline);
3. load: every client sends its requests back to back over the example phantoms (with their
   metadata); every answer is checked against the pipeline run in this process on the same file;
4. the server's peak memory (VmHWM) and its memory after the run, against the baseline.

Prints a markdown table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dermfuse.pipeline import DermFusePipeline  # noqa: E402
from dermfuse.ui import examples  # noqa: E402
from tests.app_harness import app_model, running_app  # noqa: E402


def predict(client: Client, example) -> list[float]:
    result = client.predict(handle_file(example.path), example.age, example.sex, example.site, api_name="/predict")
    return result["probabilities"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or Hub id (default: $DERMFUSE_MODEL / demo / stand-in)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--out", default="runs/bench_app_load.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dermfuse-load-"))
    model = args.model or app_model(work / "standin")
    cases = examples._load_or_make(work / "examples")
    pipeline = DermFusePipeline.from_pretrained(model)
    expected = {e.path: pipeline(e.path, e.age, e.sex, e.site, explain=False).probabilities for e in cases}
    del pipeline

    started = time.perf_counter()
    with running_app(model) as app:
        first = Client(app.url, verbose=False)
        predict(first, cases[0])
        startup_s = time.perf_counter() - started
        for i in range(10):
            predict(first, cases[i % len(cases)])
        baseline = app.memory_mb()

        latencies, failures, lock = [], [], threading.Lock()

        def session(index: int) -> None:
            client = Client(app.url, verbose=False)
            for k in range(args.requests):
                example = cases[(index * args.requests + k) % len(cases)]
                start = time.perf_counter()
                try:
                    ok = np.allclose(predict(client, example), expected[example.path], atol=1e-6)
                    problem = None if ok else f"wrong answer for {Path(example.path).name}"
                except Exception as error:  # a lost or failed request is a result, not a crash
                    problem = f"{type(error).__name__}: {error}"
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if problem:
                        failures.append(problem)

        load_started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(session, range(args.clients)))
        wall_s = time.perf_counter() - load_started
        after = app.memory_mb()

    total = args.clients * args.requests
    ordered = sorted(latencies)
    report = {
        "model": model,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "requests": total,
        "answered_correctly": total - len(failures),
        "failures": failures,
        "startup_to_first_answer_s": round(startup_s, 2),
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)], 3),
        "max_s": round(ordered[-1], 3),
        "throughput_per_s": round(total / wall_s, 2),
        "rss_after_first_10_mb": round(baseline["rss"], 1),
        "rss_after_run_mb": round(after["rss"], 1),
        "rss_drift_percent": round(100 * (after["rss"] - baseline["rss"]) / baseline["rss"], 1),
        "peak_rss_mb": round(after["peak"], 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"| {args.clients} clients × {args.requests} requests | value |\n| --- | --- |")
    for key, value in report.items():
        if key not in ("failures", "model"):
            print(f"| {key} | {value} |")
    for failure in failures[:10]:
        print(f"! {failure}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
