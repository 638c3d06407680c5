"""The training loop both stages share: optimiser, schedule and :func:`fit`, which reads top to bottom.

Set-up (network on its device, the epoch order, AdamW with warm-up and cosine decay, resume from a
checkpoint, DDP and ``torch.compile``), then epochs of optimisation steps, each epoch ending in
evaluation, keeping the best model and a checkpoint. Where the randomness comes from, and why a
resumed run is bit-exact, is in :mod:`train.order`; devices and processes are :mod:`train.runtime`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from train.checkpoint import CHECKPOINT, MODEL_DIR, save_checkpoint, save_model
from train.config import TrainConfig
from train.order import EpochOrder, SeededItems, derive_seed, make_loader
from train.runtime import Runtime, gather, mean_over_processes, replica_digest, sync_buffers

LOG_EVERY = 10  # steps between progress-bar loss updates


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimisation steps done
    epoch: int = 0  # the current epoch (0-based)
    position: int = 0  # batches done in the current epoch
    loss_sum: float = 0.0  # sum of this process's batch losses in the current epoch
    best: float | None = None  # best validation score so far
    best_epoch: int = 0  # 1-based epoch of the best score
    bad_epochs: int = 0  # epochs since the best score
    history: list = field(default_factory=list)  # one row per evaluated epoch
    stopped: str = ""  # why training ended: "epochs", "early_stopping", "max_steps", "time_limit"
    replicas: list = field(default_factory=list)  # digest of each process's final weights (all equal)


def warmup_cosine(warmup: int, total: int):
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (fused kernel, CPU and CUDA); no weight decay on biases, norms, embeddings and other
    1-D or token parameters."""
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        plain = parameter.ndim <= 1 or "embed" in name or "position" in name or "token" in name or "missing" in name
        (no_decay if plain else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, fused=True)



def fit(
    config: TrainConfig,
    runtime: Runtime,
    run: Path,
    model: nn.Module,
    part: str,
    train_set: Dataset,
    loss_fn,
    evaluate,
    monitor: str,
    checkpoint: dict | None = None,
    balance_labels=None,
    on_epoch=None,
) -> TrainState:
    """Train ``getattr(model, part)`` on ``train_set``; checkpoint, evaluate and keep the best model.

    - ``loss_fn(network, batch) → scalar loss`` (inside autocast; ``network`` may be DDP-wrapped);
    - ``evaluate(model) → {metric: value, "loss": ...}`` on the validation split, run by every
      process (it shards and gathers itself), the same dict everywhere; ``None`` when there is no
      validation split: then every epoch's model replaces the last (a fixed schedule, the last epoch kept);
    - ``monitor``: the metric that picks the best model (higher is better) and drives early stopping;
    - ``checkpoint``: a loaded checkpoint to resume from; ``balance_labels``: class indices of
      ``train_set`` for class-balanced order; ``on_epoch(state)``: called on the main process after
      each evaluated epoch (to write metrics and curves).

    The best model is saved with ``save_pretrained`` to ``run/model`` at each improvement.
    """
    # Set-up: the network, this process's share of each epoch, optimiser and schedule, the resumed state.
    network = getattr(model, part)
    network.to(runtime.device, memory_format=torch.channels_last if runtime.channels_last else torch.contiguous_format)
    order = EpochOrder(len(train_set), config.batch_size, config.seed, runtime.rank, runtime.world_size, balance_labels)
    loader = make_loader(SeededItems(train_set), order, config.batch_size, config, runtime, training=True)
    total_steps = config.epochs * order.steps
    optimizer = make_optimizer(network, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, total_steps))
    state = TrainState() if checkpoint is None else resume(checkpoint, model, optimizer, scheduler, runtime)
    trained = wrap(network, config, runtime)

    def save(reason: str) -> None:
        if runtime.is_main:
            save_checkpoint({
                "model": model.state_dict(),
                "model_config": getattr(model, "config", {}),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": asdict(state),
                "config": asdict(config),
                "reason": reason,
            }, run / CHECKPOINT)  # fmt: skip

    losses: list[torch.Tensor] = []  # this epoch's batch losses not yet added to state.loss_sum

    def tally() -> None:
        """Add the pending losses to ``state.loss_sum`` (reading them waits for the device, so only now and then)."""
        for value in losses:
            state.loss_sum += float(value)
        losses.clear()

    limit_steps = min(total_steps, config.max_steps) if config.max_steps else total_steps
    bar = tqdm(total=limit_steps, initial=min(state.step, limit_steps), unit="step", dynamic_ncols=True,
               disable=not (config.progress and runtime.is_main), mininterval=1.0)  # fmt: skip
    started = time.monotonic()
    while state.epoch < config.epochs and not state.stopped:
        # One epoch (or its rest, after a resume) of optimisation steps.
        order.set_epoch(state.epoch, state.position)
        bar.set_description(f"{part} epoch {state.epoch + 1}/{config.epochs}")
        network.train()
        epoch_started = time.monotonic()
        stop = ""
        for batch in loader:
            losses.append(train_step(trained, network, batch, loss_fn, optimizer, scheduler, config, runtime, state.step))
            state.step, state.position = state.step + 1, state.position + 1
            bar.update(1)
            if state.step % LOG_EVERY == 0:
                tally()
                bar.set_postfix(loss=f"{state.loss_sum / state.position:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            stop = stop_reason(config, state, started, runtime)
            if stop:
                break
            if state.step % config.checkpoint_every == 0 and state.position < order.steps:
                tally()
                save("step")
        tally()
        if stop == "max_steps" and state.position < order.steps:
            state.stopped = stop  # mid-epoch: checkpoint only; a resume with a larger --max_steps goes on
            save(stop)
            break
        # The epoch is complete (or cut short by the time limit): evaluate, keep the best, checkpoint.
        cut_short = stop == "time_limit" and state.position < order.steps
        end_epoch(model, network, evaluate, monitor, state, scheduler, runtime, run, epoch_started, cut_short)
        if cut_short:
            state.stopped = stop
        else:
            state.epoch, state.position, state.loss_sum = state.epoch + 1, 0, 0.0
            if stop:
                state.stopped = stop
            elif config.patience and state.bad_epochs >= config.patience:
                state.stopped = "early_stopping"
                runtime.print(f"early stopping: no better {monitor} for {config.patience} epochs")
        save(state.stopped or "epoch")
        if on_epoch is not None and runtime.is_main:
            on_epoch(state)
        runtime.barrier()
    bar.close()
    # The end: every process holds the same weights (checked), and there is a model to keep.
    state.stopped = state.stopped or "epochs"
    sync_buffers(network, runtime)
    state.replicas = gather(replica_digest(network), runtime)
    if len(set(state.replicas)) > 1:
        raise RuntimeError(f"DDP replicas diverged: weight digests {state.replicas}")
    if runtime.is_main and state.best is None:  # stopped before any evaluation: keep what there is
        save_model(model, run / MODEL_DIR)
    runtime.barrier()
    return state


def resume(checkpoint: dict, model: nn.Module, optimizer, scheduler, runtime: Runtime) -> TrainState:
    """Load model, optimiser and schedule from ``checkpoint``; return the state training stood at."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    state = TrainState(**checkpoint["state"])
    if state.stopped in ("max_steps", "time_limit"):  # limits of the last session, not of the run
        state.stopped = ""
    runtime.print(f"resumed at step {state.step} (epoch {state.epoch + 1}, batch {state.position})")
    return state


def wrap(network: nn.Module, config: TrainConfig, runtime: Runtime) -> nn.Module:
    """The module the loss runs: ``network`` in ``DistributedDataParallel`` under DDP, compiled with ``--compile``."""
    trained: nn.Module = network
    if runtime.distributed:
        trained = DistributedDataParallel(network, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if config.compile:
        trained = torch.compile(trained)
    return trained


def train_step(trained: nn.Module, network: nn.Module, batch, loss_fn, optimizer, scheduler, config: TrainConfig,
               runtime: Runtime, step: int) -> torch.Tensor:  # fmt: skip
    """One optimisation step on ``batch``; returns its loss (detached, still on the device).

    The global generator is seeded by (seed, rank, step) first, which fixes dropout and metadata
    dropout whatever happened before (exact resume)."""
    torch.manual_seed(derive_seed(config.seed, runtime.rank, step))
    batch = runtime.to_device(batch)
    with runtime.autocast():
        loss = loss_fn(trained, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip:
        nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
    optimizer.step()
    scheduler.step()
    return loss.detach()


def stop_reason(config: TrainConfig, state: TrainState, started: float, runtime: Runtime) -> str:
    """``"max_steps"`` or ``"time_limit"`` once that limit is reached, else ``""``."""
    stop = ""
    if config.max_steps and state.step >= config.max_steps:
        stop = "max_steps"
    elif config.time_limit and time.monotonic() - started > 60 * config.time_limit:
        stop = "time_limit"
    if runtime.distributed and config.time_limit:  # clocks differ: every process stops at rank 0's step
        stop = gather(stop, runtime)[0]
    return stop


def end_epoch(model: nn.Module, network: nn.Module, evaluate, monitor: str, state: TrainState, scheduler, runtime: Runtime,
              run: Path, epoch_started: float, partial: bool) -> None:  # fmt: skip
    """Evaluate the epoch's model, add its row to ``state.history`` and save the model if it is the best so far."""
    sync_buffers(network, runtime)
    metrics = evaluate(model) if evaluate is not None else {}
    network.train()
    row = {"epoch": state.epoch + 1, "step": state.step, "train_loss": mean_over_processes(state.loss_sum / max(1, state.position), runtime),
           "val_loss": metrics.pop("loss", None), "val": metrics, "lr": scheduler.get_last_lr()[0],
           "seconds": round(time.monotonic() - epoch_started, 1)}  # fmt: skip
    if partial:
        row["partial"] = True
    state.history.append(row)
    score = metrics.get(monitor)
    if state.best is None or (score is not None and score > state.best):
        state.best, state.best_epoch, state.bad_epochs = score, state.epoch + 1, 0
        if runtime.is_main:
            save_model(model, run / MODEL_DIR)
    else:
        state.bad_epochs += 1
    runtime.print(f"epoch {state.epoch + 1}: train loss {row['train_loss']:.4f}" + (
        f", val {monitor} {format_metric(score)} (best {format_metric(state.best)} at epoch {state.best_epoch})" if evaluate else ""))


def format_metric(value) -> str:
    """A metric for a log line: four decimals, or ``n/a`` when it was not measured."""
    return "n/a" if value is None else f"{value:.4f}"
