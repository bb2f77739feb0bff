"""Loaders and samplers of the fit loop. Every order depends only on (seed, rank, epoch), so a
resumed run sees the batches the interrupted one would have, under any number of processes."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from rxvision.config import RxVisionConfig


def dataset_labels(dataset: Dataset) -> list[int]:
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return [int(v) for v in getattr(dataset, attr)]
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return [int(v) for v in tensors[1]]
    return [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]


class ShardSampler(Sampler[int]):
    """rank::world without padding: DistributedSampler pads with repeats, which would bias
    validation metrics (each rank's predictions are gathered, so each sample counts once)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class BalancedSampler(Sampler[int]):
    """Each class equally likely per draw (weights 1 / class count, with replacement), an
    epoch as long as the dataset; the draw of an epoch comes from (seed, epoch) alone and is
    sharded rank::world, so ranks see disjoint parts of one global draw."""

    def __init__(self, labels: Sequence[int], rank: int, world: int, seed: int) -> None:
        y = torch.as_tensor(list(labels), dtype=torch.int64)
        counts = torch.bincount(y).double()
        self.weights = (1.0 / counts.clamp(min=1))[y]
        self.rank, self.world, self.seed, self.epoch = rank, world, seed, 0
        self.per_rank = math.ceil(len(y) / world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.epoch)
        drawn = torch.multinomial(self.weights, self.per_rank * self.world, True, generator=gen)
        return iter(drawn[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return self.per_rank


@dataclass
class Loaders:
    train: DataLoader
    sampler: DistributedSampler | BalancedSampler
    val: DataLoader

    def seed_epoch(self, seed: int, rank: int, epoch: int) -> None:
        """Data order and augmentation draws that depend only on (seed, rank, epoch) (exactly
        so with num_workers=0 or non-persistent workers; persistent workers keep the streams
        they started with)."""
        self.sampler.set_epoch(epoch)
        stream = seed + 1000 * rank + epoch
        if self.train.generator is not None:
            self.train.generator.manual_seed(stream)  # draws each epoch's worker seeds
        reseed = getattr(self.train.dataset, "reseed", None)
        if self.train.num_workers == 0 and callable(reseed):
            reseed(stream)  # in-process augmentation RNG (albumentations Compose)


def build_loaders(
    cfg: RxVisionConfig,
    train_set: Dataset,
    val_set: Dataset,
    train_labels: Sequence[int] | None,
    rank: int,
    world: int,
    device_type: str,
) -> Loaders:
    from rxvision.data.loader import seed_worker

    lcfg, seed = cfg.data.loader, cfg.training.seed
    per_rank = math.ceil(len(train_set) / world)  # type: ignore[arg-type]
    drop_last = bool(lcfg.drop_last and per_rank > lcfg.batch_size)
    sampler: DistributedSampler | BalancedSampler
    if cfg.training.sampler == "balanced":
        labels = train_labels if train_labels is not None else dataset_labels(train_set)
        sampler = BalancedSampler(labels, rank, world, seed)
    else:
        # a DistributedSampler even for one process: its order depends only on (seed, epoch)
        sampler = DistributedSampler(
            train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
    common = {
        "num_workers": lcfg.num_workers,
        "pin_memory": bool(lcfg.pin_memory and device_type == "cuda"),
        "worker_init_fn": seed_worker if lcfg.num_workers > 0 else None,
        "prefetch_factor": lcfg.prefetch_factor if lcfg.num_workers > 0 else None,
    }
    train = DataLoader(
        train_set,
        batch_size=lcfg.batch_size,
        sampler=sampler,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed + rank),
        persistent_workers=bool(lcfg.persistent_workers and lcfg.num_workers > 0),
        **common,
    )
    val = DataLoader(
        val_set,
        batch_size=lcfg.eval_batch_size,
        sampler=ShardSampler(len(val_set), rank, world),  # type: ignore[arg-type]
        **common,
    )
    return Loaders(train, sampler, val)
