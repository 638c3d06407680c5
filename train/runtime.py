"""Where and how this process trains: device, precision, and the processes of a DDP run.

One code path for one CPU, one GPU, and many GPUs or nodes: under ``torchrun`` (``WORLD_SIZE`` > 1)
:func:`setup_runtime` joins the process group (NCCL on CUDA, gloo on CPU); :func:`gather`,
:func:`sync_buffers` and :func:`replica_digest` keep the processes in agreement, so evaluation can be
sharded and gathered and every process sees the same metrics and ends with the same weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from train.config import TrainConfig


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



def sync_buffers(network: nn.Module, runtime: Runtime) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every process, so all replicas are identical."""
    if runtime.distributed:
        for buffer in network.buffers():
            dist.broadcast(buffer.data, src=0)
