"""Run the real app (``app.py``) in a child process on a free local port: for tests and benchmarks.

``app_model(folder)`` names the model to serve: ``$DERMFUSE_MODEL`` if set, else the shipped demo
checkpoint, else (before the demo weights exist) a tiny untrained stand-in saved into ``folder``.

``with running_app(model) as app:`` starts ``python app.py --model MODEL --host 127.0.0.1 --port N``,
waits until the page answers, yields the URL, the process id and the log, and always stops the
process (terminate, then kill) when the block ends; ``serving(command, url, cwd, env)`` does the same
for any command line (the Space test starts ``app.py`` from another folder and interpreter).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dermfuse.sources import CHECKPOINTS, DEMO_MODEL, MODEL_ENV

APP = Path(__file__).resolve().parents[1] / "app.py"


def app_model(folder: str | os.PathLike) -> str:
    """``$DERMFUSE_MODEL``, else the demo checkpoint, else a tiny stand-in written to ``folder``."""
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    demo = CHECKPOINTS / DEMO_MODEL
    if (demo / "config.json").is_file():
        return str(demo)
    import torch

    from dermfuse.models import create_model

    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)  # the same stand-in every time, so test timings and outputs are repeatable
        model = create_model("tiny")
        model.update_config(name=DEMO_MODEL, dataset="phantom (synthetic, stand-in: untrained)")
        model.save_pretrained(folder)
    return str(folder)


@dataclass
class RunningApp:
    url: str
    pid: int
    log: Path

    def memory_mb(self) -> dict[str, float]:
        """The server's resident memory now (``rss``) and its peak so far (``peak``), in MiB (Linux)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        values = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status.splitlines()
                  if line.startswith(("VmRSS", "VmHWM"))}
        return {"rss": values["VmRSS"], "peak": values["VmHWM"]}

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(model: str, timeout_s: float = 180, env: dict | None = None) -> Iterator[RunningApp]:
    """Start the app with ``model`` and yield it once its page answers; stop it afterwards."""
    port = free_port()
    command = [sys.executable, str(APP), "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"http://127.0.0.1:{port}/", APP.parent, {**os.environ, **(env or {})}, timeout_s) as app:
        yield app


@contextmanager
def serving(command: list, url: str, cwd: str | os.PathLike, env: dict, timeout_s: float = 180) -> Iterator[RunningApp]:
    """Run ``command`` (a server) in ``cwd`` with exactly ``env``; yield once ``url`` answers; always stop it."""
    log = Path(tempfile.mkstemp(prefix="dermfuse-app-", suffix=".log")[1])
    with open(log, "w") as out:
        process = subprocess.Popen([str(part) for part in command], stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                   env=env)
    app = RunningApp(url, process.pid, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the app exited with code {process.returncode} before answering:\n{app.log_tail()}")
            try:
                with urllib.request.urlopen(app.url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not answer within {timeout_s:.0f} s:\n{app.log_tail()}")
            time.sleep(0.25)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)
