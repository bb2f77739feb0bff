"""Shared fixtures for the integration tier: a real ZenML local stack in a temporary state folder.

`rxvision_home` (session scope) points ZenML, MLflow and BentoML at a fresh temporary
RXVISION_HOME with its own ZenML repository and the `rxvision-local` stack registered and
active, so tests never touch the developer's `.rxvision/` nor each other's (each pytest
process gets its own). `tiny_config` builds a small, fast training config on top of the demo
profile for pipelines that need a trained model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rxvision.config import RxVisionConfig, load_config
from tests.support.overrides import TINY_OVERRIDES


@pytest.fixture(scope="session")
def rxvision_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatePaths]:  # noqa: F821
    """A temporary RXVISION_HOME with the local ZenML stack registered and active."""
    saved = dict(os.environ)
    from stacks.setup import configure_environment, ensure_local_stack

    home = tmp_path_factory.mktemp("rxvision-home")
    paths = configure_environment(home, repository=home)
    ensure_local_stack(paths)
    yield paths
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_config(rxvision_home) -> Callable[..., RxVisionConfig]:
    """Build a tiny demo config plus extra overrides (synthetic data cached in the temp home)."""

    def make(*overrides: str, config_file: Path | dict | None = None) -> RxVisionConfig:
        # the data cache is $RXVISION_HOME/cache, i.e. inside the temporary home
        return load_config("demo", config_file, [*TINY_OVERRIDES, *overrides])

    return make


@pytest.fixture(scope="module")
def isolated_home(rxvision_home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatePaths]:  # noqa: F821
    """A fresh state folder for one test module: its own ZenML store, model versions and
    MLflow, so what other modules registered (e.g. a production model) cannot change its
    outcome. The session's state folder is active again afterwards."""
    from stacks.setup import configure_environment, ensure_local_stack

    home = tmp_path_factory.mktemp("rxvision-module-home")
    paths = configure_environment(home, repository=home)
    ensure_local_stack(paths)
    yield paths
    configure_environment(rxvision_home.home, repository=rxvision_home.repository)
