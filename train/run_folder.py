"""The run folder: created once (or reopened with ``--resume``), holding the resolved configuration.

Apart from the loop because the two stages open it before they build data and model, and write their
splits, metrics and figures into it around :func:`train.loop.fit`.

A run killed before its first checkpoint has a folder (settings, perhaps its split) but nothing to
continue from; ``--resume`` then starts it afresh with its saved settings and says so, rather than
failing and leaving the user to work out that the flag was the problem.
"""

from __future__ import annotations

from pathlib import Path

from train.checkpoint import CHECKPOINT, load_checkpoint
from train.config import CONFIG_FILE, TrainConfig, describe, save_config
from train.runtime import Runtime


def open_run(config: TrainConfig, runtime: Runtime) -> Path:
    """Create (or, with ``--resume``, reopen) the run folder; print and save the resolved config."""
    run = Path(config.out)
    if runtime.is_main:
        if config.resume and not (run / CHECKPOINT).is_file():
            runtime.print(f"note: --resume, but {run} holds no {CHECKPOINT} yet (the run stopped before its first "
                          "checkpoint): starting it afresh with its saved settings")
        if not config.resume and (run / CHECKPOINT).exists():
            raise FileExistsError(f"{run} already holds a run: pass --resume to continue it, or choose another --out")
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / CONFIG_FILE)
        runtime.print(describe(config))
        runtime.print(f"run folder {run}; {runtime.world_size} process(es) on {runtime.device}, {runtime.precision_note}")
    runtime.barrier()
    return run


def resume_checkpoint(config: TrainConfig, run: Path) -> dict | None:
    """The checkpoint a ``--resume`` run continues from; ``None`` for a new run, and for a resumed one
    that stopped before its first checkpoint (:func:`open_run` has said it starts afresh)."""
    if config.resume and (run / CHECKPOINT).is_file():
        return load_checkpoint(run / CHECKPOINT)
    return None
