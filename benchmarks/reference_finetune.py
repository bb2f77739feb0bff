"""A bare fine-tuning script, the yardstick for the product's real-data recipe: pretrained
tf_efficientnet_lite0, every layer trained, AdamW + one-cycle, bf16 autocast, flips only.
Deliberately nothing else (no validation split, no checkpoint choice, no class weights)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from rxvision.models.weights import load_pretrained  # the offline ImageNet weights, nothing more


class Files(Dataset):
    def __init__(self, items: list[tuple[Path, int]], tf: T.Compose) -> None:
        self.items, self.tf = items, tf

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        return self.tf(Image.open(path).convert("RGB")), label


def train_and_predict(
    train: list[tuple[Path, int]],
    test: list[tuple[Path, int]],
    num_classes: int,
    size: int = 128,
    epochs: int = 8,
    lr: float = 1e-3,
    batch: int = 32,
    bf16: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """Test-set class probabilities and the training wall time (s)."""
    torch.manual_seed(seed)
    norm = T.Normalize((0.5,) * 3, (0.5,) * 3)  # the weights package's preprocessing
    train_tf = T.Compose(
        [
            T.Resize((size, size)),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.ToTensor(),
            norm,
        ]
    )
    test_tf = T.Compose([T.Resize((size, size)), T.ToTensor(), norm])
    model = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    load_pretrained(model, "tf_efficientnet_lite0", "package")
    model.reset_classifier(num_classes)
    loader = DataLoader(
        Files(train, train_tf),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=2,
        persistent_workers=True,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.perf_counter() - start
    model.eval()
    probs = []
    with torch.inference_mode():
        for x, _ in DataLoader(Files(test, test_tf), batch_size=64, num_workers=2):
            probs.append(torch.softmax(model(x).float(), dim=1).numpy())
    return np.concatenate(probs), train_s
