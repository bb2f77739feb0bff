"""The guard around oneDNN's bf16 weight gradients of convolutions whose taps see only padding,
and the engine's refusal to train on a non-finite loss."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from tiny_train_data import colour_dataset, tiny_config
from torch import nn

from rxvision.errors import RxVisionError
from rxvision.training import fit_datasets
from rxvision.training.cpu_bf16 import _taps_see_only_padding, guard_cpu_bf16, padding_only_taps


def _brute_force(size: int, k: int, s: int, p: int, d: int) -> bool:
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    return any(not any(0 <= o * s - p + tap * d < size for o in range(out)) for tap in range(k))


def test_padding_only_rule_matches_an_explicit_count_of_taps() -> None:
    cases = 0
    for size, k, s, p, d in itertools.product(range(1, 9), (1, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        if size + 2 * p - d * (k - 1) - 1 < 0:
            continue
        assert _taps_see_only_padding(size, k, s, p, d) == _brute_force(size, k, s, p, d)
        cases += 1
    assert cases > 300
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1)
    assert padding_only_taps(conv, 1, 1) and not padding_only_taps(conv, 7, 7)
    assert not padding_only_taps(nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), 1, 1)


def test_guarded_conv_gives_zero_gradient_on_padding_only_taps_under_bf16() -> None:
    # The shape that returned garbage in 278 of 400 unguarded passes on an AVX-512 BF16 CPU.
    torch.manual_seed(0)
    conv = nn.Conv2d(192, 96, 3, stride=2, padding=1, bias=False)
    assert guard_cpu_bf16(nn.Sequential(conv)) == 1
    for _ in range(40):
        scratch = torch.full((1 << 16,), float("nan"), dtype=torch.bfloat16)
        del scratch  # leave NaN bit patterns in memory the next kernels may reuse
        x = torch.randn(8, 192, 1, 1)
        conv.weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x).float().sum().backward()
        grad = conv.weight.grad
        assert torch.isfinite(grad).all()
        corners = grad[:, :, [0, 0, 2, 2], [0, 2, 0, 2]]
        assert torch.count_nonzero(corners) == 0  # these taps read only padding
    state = nn.Sequential(conv).state_dict()
    assert list(state) == ["0.weight"]  # the guard leaves the module's state as it was


def test_guard_keeps_bf16_for_ordinary_geometry() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1)
    guard_cpu_bf16(conv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
        assert conv(torch.randn(1, 3, 1, 1)).dtype == torch.float32


def test_a_nan_loss_stops_training_naming_epoch_step_and_precision(tmp_path: Path) -> None:
    train, val = colour_dataset(48, seed=0), colour_dataset(24, seed=1)
    x, y = train.tensors
    x = x.clone()
    x[20] = float("nan")  # one poisoned image: its batch's loss is NaN
    poisoned = torch.utils.data.TensorDataset(x, y)
    cfg = tiny_config(epochs=2, precision="bf16", loader={"batch_size": 48})
    with pytest.raises(RxVisionError) as err:
        fit_datasets(cfg, poisoned, val, ["a", "b", "c"], tmp_path)
    message = str(err.value)
    assert "loss is nan" in message and "epoch 1, step 1 of 1" in message
    assert "precision bf16" in message and "training.precision=32" in message
    assert not (tmp_path / "last.ckpt").exists()  # nothing trained on it was saved
