"""PyTorch Dataset over labelled files and the DataLoader factory (workers, pinned memory,
DistributedSampler under DDP, seeded workers)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rxvision.config import LoaderConfig
from rxvision.data.images import load_rgb
from rxvision.data.sources import LabelMap, Sample
from rxvision.errors import RxVisionError


class ImageDataset(Dataset):
    """(image tensor CHW float32, int label) per sample. Images are read with
    :func:`rxvision.data.images.load_rgb` (any colour mode -> RGB, as validation converts)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        label_map: LabelMap,
        transform: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.label_map = label_map
        self.transform = transform
        # fail now, not in a worker mid-epoch
        self.targets: list[int] = [label_map.index(s.label) for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rgb = load_rgb(self.samples[i].path)
        if self.transform is None:
            tensor = (
                torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)
            )
        else:
            tensor = self.transform(image=rgb)["image"]
            if isinstance(tensor, np.ndarray):
                tensor = torch.from_numpy(np.ascontiguousarray(tensor))
        return tensor.float(), self.targets[i]

    def reseed(self, seed: int) -> None:
        """Give the augmentation pipeline its own stream (albumentations' Compose keeps an
        internal RNG that forked workers would otherwise all copy)."""
        set_seed = getattr(self.transform, "set_random_seed", None)
        if callable(set_seed):
            set_seed(seed)


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: derive numpy/random/albumentations seeds from torch's per-worker seed
    (which the loader's generator fixes), so runs repeat and workers differ."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, ImageDataset):
        info.dataset.reseed(seed)


def build_loader(
    dataset: Dataset,
    cfg: LoaderConfig,
    train: bool,
    distributed: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader set up from ``cfg``: training shuffles (seeded) and drops the last
    incomplete batch when ``cfg.drop_last``; evaluation keeps order and every sample. With
    ``distributed=True`` a DistributedSampler shards the data (call ``loader.sampler.set_epoch
    (epoch)`` each epoch). Pinned memory only when CUDA is there."""
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise RxVisionError(
            "cannot build a data loader over an empty dataset", "check the split sizes"
        )
    batch_size = cfg.batch_size if train else cfg.eval_batch_size
    drop_last = bool(train and cfg.drop_last and n > batch_size)
    generator = torch.Generator()
    generator.manual_seed(seed)
    sampler = None
    if distributed:
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            raise RxVisionError(
                "distributed=True but no torch.distributed process group is initialised",
                "call build_loader(distributed=True) inside the DDP worker "
                "after init_process_group",
            )
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=drop_last)
    if isinstance(dataset, ImageDataset) and cfg.num_workers == 0:
        dataset.reseed(seed)
    workers = cfg.num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        pin_memory=bool(cfg.pin_memory and torch.cuda.is_available()),
        persistent_workers=bool(cfg.persistent_workers and workers > 0),
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        drop_last=drop_last,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=generator,
    )
