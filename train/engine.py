"""The training machinery both stages share: runtime (device, DDP, precision), data order, the epoch loop.

One code path for one CPU, one GPU, and many GPUs or nodes: under ``torchrun`` (``WORLD_SIZE`` > 1)
:func:`setup_runtime` joins the process group (NCCL on CUDA, gloo on CPU), the trained network is
wrapped in ``DistributedDataParallel``, each process reads its own share of every epoch's order,
and evaluation is sharded and gathered so every process sees the same metrics.

Exact resume. Everything random is a function of the seed and a position, never of history:
- the epoch's order (a permutation, or a class-balanced draw) comes from a generator seeded by
  (seed, epoch); each position also gets its own augmentation seed from it;
- a sample is loaded under ``torch.manual_seed(its seed)`` (forked, so nothing else is disturbed),
  so its augmentation does not depend on which worker loads it or when;
- before each optimisation step the global generator is seeded by (seed, rank, step), which fixes
  dropout and metadata dropout.
So the checkpoint's sampler state is just (epoch, batches done in it), and a resumed run computes
exactly what an uninterrupted one would (bit for bit on CPU in fp32).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from dermfuse.data import class_balanced_sampler
from train.checkpoint import CHECKPOINT, MODEL_DIR, save_checkpoint, save_model
from train.config import CONFIG_FILE, TrainConfig, describe, save_config

LOG_EVERY = 10  # steps between progress-bar loss updates


# --- runtime ----------------------------------------------------------------------------------


@dataclass
class Runtime:
    """Where and how this process trains."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None  # autocast dtype, None = fp32
    channels_last: bool = False
    precision_note: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        """bf16 autocast on this device, or a no-op in fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, batch):
        """Move a batch (tensor, or dict/list/tuple of them) to the device; images channels-last."""
        if isinstance(batch, torch.Tensor):
            moved = batch.to(self.device, non_blocking=True)
            return moved.contiguous(memory_format=torch.channels_last) if self.channels_last and moved.ndim == 4 else moved
        if isinstance(batch, dict):
            return {key: self.to_device(value) for key, value in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(value) for value in batch)
        return batch

    def print(self, *args, **kwargs) -> None:
        """Print on the main process only (through tqdm, so progress bars stay intact)."""
        if self.is_main:
            tqdm.write(" ".join(str(a) for a in args), **kwargs)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup_runtime(config: TrainConfig) -> Runtime:
    """Join the process group under torchrun, pick the device and the precision, seed, set determinism."""
    world_size, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(config.device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    amp_dtype, note = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)
    return Runtime(device, rank, world_size, amp_dtype, config.channels_last, note)


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → this process's GPU under torchrun (``cuda:LOCAL_RANK``) if there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device={name}: no CUDA device is available here; use --device=cpu or auto")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``precision`` (auto, bf16, fp32) on ``device``, and why.

    ``auto`` picks bf16 where it is fast: CUDA GPUs with bf16, and CPUs with AMX (oneDNN's bf16
    convolutions run several times faster there). On CPUs without AMX (AVX-512-BF16 only) bf16
    autocast measured slower than fp32 for these networks, so ``auto`` stays in fp32 there.
    """
    if precision == "fp32":
        return None, "fp32 (asked for)"
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise ValueError("--precision=bf16: this GPU has no bf16 support; use --precision=fp32")
        return (torch.bfloat16, "bf16 autocast (CUDA)") if supported else (None, "fp32 (GPU without bf16)")
    if device.type == "cpu":
        if not torch.backends.mkldnn.is_available():
            if precision == "bf16":
                raise ValueError("--precision=bf16: this PyTorch build has no oneDNN (mkldnn) for bf16 on CPU")
            return None, "fp32 (no oneDNN)"
        if precision == "bf16":
            return torch.bfloat16, "bf16 autocast (CPU, asked for)"
        if torch.cpu._is_amx_tile_supported():
            return torch.bfloat16, "bf16 autocast (CPU with AMX)"
        return None, "fp32 (CPU without AMX: bf16 autocast is slower here; force it with --precision=bf16)"
    return None, f"fp32 ({device.type})"


# --- data order -------------------------------------------------------------------------------


def derive_seed(*parts: int) -> int:
    """A 63-bit seed determined by ``parts`` (e.g. seed, epoch), well mixed (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class EpochOrder(Sampler):
    """This process's share of an epoch, as ``(index, sample seed)`` pairs, in full batches.

    The epoch's order is a random permutation, or with ``labels`` a class-balanced draw with
    replacement (:func:`dermfuse.data.class_balanced_sampler`), seeded by (seed, epoch). Process
    ``rank`` takes every ``world_size``-th entry; every process gets the same number of full
    batches (``steps``), so DDP processes never wait for one another at an epoch's end.
    ``set_epoch(epoch, skip)`` starts the next iteration at batch ``skip`` of ``epoch`` (resume).
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, labels=None):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.labels = rank, world_size, labels
        self.steps = size // world_size // batch_size  # full batches per process per epoch
        if self.steps == 0:
            raise ValueError(
                f"{size} training images are too few for batches of {batch_size} on {world_size} process(es): "
                "lower --batch_size or give more data"
            )
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return (self.steps - self.skip) * self.batch_size

    def __iter__(self):
        epoch_seed = derive_seed(self.seed, self.epoch)
        generator = torch.Generator().manual_seed(epoch_seed)
        if self.labels is None:
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(class_balanced_sampler(self.labels, seed=epoch_seed % 2**62, num_samples=self.size))
        sample_seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        for position in range(self.skip * self.batch_size, self.steps * self.batch_size):
            k = position * self.world_size + self.rank
            yield order[k], sample_seeds[k]


class SeededItems(Dataset):
    """``dataset[index]`` loaded under ``torch.manual_seed(seed)`` for an ``(index, seed)`` item.

    The augmentations draw from torch's global generator; seeding it per sample (inside a fork of the
    RNG state, so the caller's state is untouched) makes them independent of workers and timing.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class Shard(Sampler):
    """Indices ``rank, rank + world_size, ...``: one process's share of an evaluation set, no padding."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, size, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


def make_loader(dataset: Dataset, sampler: Sampler, batch_size: int, config: TrainConfig, runtime: Runtime,
                training: bool = False) -> DataLoader:  # fmt: skip
    """A DataLoader with the run's workers and pinned memory on CUDA; for ``training``, full batches
    only and workers that persist across epochs."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=training and config.workers > 0,
        drop_last=training,
    )


def gather(value, runtime: Runtime) -> list:
    """Every process's ``value`` (any picklable object), in rank order, on every process."""
    if not runtime.distributed:
        return [value]
    gathered = [None] * runtime.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_processes(value: float, runtime: Runtime) -> float:
    return float(np.mean(gather(value, runtime)))


def replica_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer: equal on all DDP processes when they are in sync."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --- the run folder ---------------------------------------------------------------------------


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


# --- the loop ---------------------------------------------------------------------------------


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
    network = getattr(model, part)
    network.to(runtime.device, memory_format=torch.channels_last if runtime.channels_last else torch.contiguous_format)
    order = EpochOrder(len(train_set), config.batch_size, config.seed, runtime.rank, runtime.world_size, balance_labels)
    loader = make_loader(SeededItems(train_set), order, config.batch_size, config, runtime, training=True)
    total_steps = config.epochs * order.steps
    optimizer = make_optimizer(network, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, total_steps))
    state = TrainState()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = TrainState(**checkpoint["state"])
        if state.stopped in ("max_steps", "time_limit"):  # limits of the last session, not of the run
            state.stopped = ""
        runtime.print(f"resumed at step {state.step} (epoch {state.epoch + 1}, batch {state.position})")
    trained: nn.Module = network
    if runtime.distributed:
        trained = DistributedDataParallel(network, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if config.compile:
        trained = torch.compile(trained)

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
        order.set_epoch(state.epoch, state.position)
        bar.set_description(f"{part} epoch {state.epoch + 1}/{config.epochs}")
        network.train()
        epoch_started = time.monotonic()
        stop = ""
        for batch in loader:
            torch.manual_seed(derive_seed(config.seed, runtime.rank, state.step))
            batch = runtime.to_device(batch)
            with runtime.autocast():
                loss = loss_fn(trained, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            state.step, state.position = state.step + 1, state.position + 1
            losses.append(loss.detach())
            bar.update(1)
            if state.step % LOG_EVERY == 0:
                tally()
                bar.set_postfix(loss=f"{state.loss_sum / state.position:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if config.max_steps and state.step >= config.max_steps:
                stop = "max_steps"
            elif config.time_limit and time.monotonic() - started > 60 * config.time_limit:
                stop = "time_limit"
            if runtime.distributed and config.time_limit:  # clocks differ: every process stops at rank 0's step
                stop = gather(stop, runtime)[0]
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
        sync_buffers(network, runtime)
        metrics = evaluate(model) if evaluate is not None else {}
        network.train()
        row = {"epoch": state.epoch + 1, "step": state.step, "train_loss": mean_over_processes(state.loss_sum / max(1, state.position), runtime),
               "val_loss": metrics.pop("loss", None), "val": metrics, "lr": scheduler.get_last_lr()[0],
               "seconds": round(time.monotonic() - epoch_started, 1)}  # fmt: skip
        if stop == "time_limit" and state.position < order.steps:
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
            f", val {monitor} {_fmt(score)} (best {_fmt(state.best)} at epoch {state.best_epoch})" if evaluate else ""))
        if stop == "time_limit" and state.position < order.steps:
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
    state.stopped = state.stopped or "epochs"
    sync_buffers(network, runtime)
    state.replicas = gather(replica_digest(network), runtime)
    if len(set(state.replicas)) > 1:
        raise RuntimeError(f"DDP replicas diverged: weight digests {state.replicas}")
    if runtime.is_main and state.best is None:  # stopped before any evaluation: keep what there is
        save_model(model, run / MODEL_DIR)
    runtime.barrier()
    return state


def sync_buffers(network: nn.Module, runtime: Runtime) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every process, so all replicas are identical."""
    if runtime.distributed:
        for buffer in network.buffers():
            dist.broadcast(buffer.data, src=0)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
