"""The order of the data: which sample, with which augmentation seed, at each position of an epoch.

Exact resume. Everything random is a function of the seed and a position, never of history:
- the epoch's order (a permutation, or a class-balanced draw) comes from a generator seeded by
  (seed, epoch); each position also gets its own augmentation seed from it (:class:`EpochOrder`);
- a sample is loaded under ``torch.manual_seed(its seed)`` (forked, so nothing else is disturbed),
  so its augmentation does not depend on which worker loads it or when (:class:`SeededItems`);
- before each optimisation step the loop seeds the global generator by (seed, rank, step)
  (:func:`derive_seed`), which fixes dropout and metadata dropout.
So the checkpoint's sampler state is just (epoch, batches done in it), and a resumed run computes
exactly what an uninterrupted one would (bit for bit on CPU in fp32). Under DDP each process reads
its own share of every epoch's order; evaluation sets are split by :class:`Shard`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dermfuse.data import class_balanced_sampler
from train.config import TrainConfig
from train.runtime import Runtime


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

