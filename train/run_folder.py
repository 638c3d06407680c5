"""The run folder: created once (or reopened with ``--resume``), holding the resolved configuration.

Apart from the loop because the two stages open it before they build data and model, and write their
splits, metrics and figures into it around :func:`train.loop.fit`.
"""

from __future__ import annotations

from pathlib import Path

from train.checkpoint import CHECKPOINT
from train.config import CONFIG_FILE, TrainConfig, describe, save_config
from train.runtime import Runtime


def open_run(config: TrainConfig, runtime: Runtime) -> Path:
    """Create (or, with ``--resume``, reopen) the run folder; print and save the resolved config."""
    run = Path(config.out)
    if runtime.is_main:
        if config.resume and not (run / CHECKPOINT).is_file():
            raise FileNotFoundError(f"--resume: {run} has no {CHECKPOINT} to resume from")
        if not config.resume and (run / CHECKPOINT).exists():
            raise FileExistsError(f"{run} already holds a run: pass --resume to continue it, or choose another --out")
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / CONFIG_FILE)
        runtime.print(describe(config))
        runtime.print(f"run folder {run}; {runtime.world_size} process(es) on {runtime.device}, {runtime.precision_note}")
    runtime.barrier()
    return run
