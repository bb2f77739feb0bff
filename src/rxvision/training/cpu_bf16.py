"""A guard around a oneDNN bug in bf16 training on the CPU.

On CPUs with AVX-512 BF16, oneDNN's bf16 weight-gradient kernel can leave uninitialised the
kernel taps of a convolution that only ever see zero padding (e.g. a 3x3 stride-2 conv over a
1x1 feature map, as small images meet deep backbones). Their true gradient is 0; what comes
back is whatever the allocator last left there: NaN, or a large finite number that silently
corrupts the weights. It depends on memory reuse, so the same run may fail under pytest and
pass in a script. Measured on torch 2.14.1: 278 of 400 backward passes of
Conv2d(192, 96, 3, stride=2, padding=1) on a (8, 192, 1, 1) input; 0 with oneDNN disabled.

The guard runs exactly those convolutions (the cheap ones on tiny maps) in fp32; every other
layer keeps bf16 autocast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _taps_see_only_padding(size: int, kernel: int, stride: int, pad: int, dilation: int) -> bool:
    """Whether some kernel tap along one axis reads only padding for every output position."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    if out <= 0:
        return False
    for tap in range(kernel):
        offset = tap * dilation - pad  # input index of this tap at output position 0
        first = max(0, -(offset // stride))  # first output position where it is inside
        if first >= out or first * stride + offset > size - 1:
            return True
    return False


def _left_padding(conv: nn.Conv2d) -> Sequence[int]:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        return tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
    return tuple(conv.padding)  # type: ignore[arg-type]


def padding_only_taps(conv: nn.Conv2d, height: int, width: int) -> bool:
    """True where oneDNN's bf16 weight gradient of ``conv`` on an HxW input is unreliable."""
    pads = _left_padding(conv)
    if conv.padding_mode != "zeros" or not any(pads):  # other modes pad explicitly
        return False
    return any(
        _taps_see_only_padding(size, k, s, p, d)
        for size, k, s, p, d in zip(
            (height, width), conv.kernel_size, conv.stride, pads, conv.dilation
        )
    )


class _Fp32Where:
    """Replaces one conv's forward: fp32 outside autocast where the input's geometry would hit
    the bug, the original forward otherwise. Keeps the module (and its state dict) as is."""

    def __init__(self, conv: nn.Conv2d) -> None:
        self.forward = conv.forward
        self.conv = conv
        self.cache: dict[tuple[int, int], bool] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled("cpu") or x.ndim != 4:
            return self.forward(x)
        key = (int(x.shape[-2]), int(x.shape[-1]))
        if key not in self.cache:
            self.cache[key] = padding_only_taps(self.conv, *key)
        if not self.cache[key]:
            return self.forward(x)
        with torch.autocast("cpu", enabled=False):
            return self.forward(x.float())


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast
    is faster than fp32; elsewhere it is emulated and slower. Reads /proc/cpuinfo (Linux) and
    falls back to torch's private probes (torch.cpu._is_*_supported, guarded: they may go)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        try:
            if callable(probe) and probe():
                return True
        except RuntimeError:
            continue
    return False


def guard_cpu_bf16(model: nn.Module) -> int:
    """Install the guard on every Conv2d of ``model``; returns how many convs it watches."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not isinstance(module.forward, _Fp32Where):
            module.forward = _Fp32Where(module)  # type: ignore[method-assign]
            count += 1
    return count
