"""Lazily loaded package names (PEP 562): a package maps each public name to the submodule
that defines it, and the submodule is imported on first use. Importing one light submodule
(the serving path, a data worker) then does not pull in torch, timm or albumentations."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_names(
    package: str, submodule_of: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``submodule_of[name]`` is the submodule
    (relative to the package) holding ``name``; a loaded name is kept in the package."""

    def __getattr__(name: str) -> Any:
        if name in submodule_of:
            value = getattr(importlib.import_module(f"{package}.{submodule_of[name]}"), name)
            setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
