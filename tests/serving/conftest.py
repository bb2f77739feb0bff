"""One real `bentoml serve` per test module: a tiny trained model saved into a temporary
BENTOML_HOME, served on a free 127.0.0.1 port, stopped (process group) at teardown."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bentos/ is imported from the repository root
    sys.path.insert(0, str(REPO_ROOT))

# small limits so the limit cases stay small; a small in-flight cap so overload is reachable
SERVER_OVERRIDES = (
    "serving.max_image_bytes=300000",
    "serving.max_image_pixels=1000000",
    "serving.max_images_per_request=4",
    "serving.max_in_flight=6",
    "serving.max_latency_ms=200",
    "serving.threads=1",
    "serving.workers=1",
    # one model call at a time, so concurrent requests must queue and merge
    "serving.concurrent_batches=1",
    "serving.max_request_bytes=1500000",
    "serving.body_timeout_s=2",
)


@pytest.fixture(scope="module")
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("bentoml_home")
    old = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("BENTOML_HOME", None)
    else:
        os.environ["BENTOML_HOME"] = old


def store_model(bentoml_home: Path, kind: str, work: Path) -> str:
    """A tiny model (tests.support.served) in the temporary BentoML store; in a child process,
    so this test process never imports bentoml against another store."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", "from tests.support.served import main; main()", kind, str(work)],
        env={
            **os.environ,
            "BENTOML_HOME": str(bentoml_home),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        },
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def served_model_tag(bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return store_model(bentoml_home, "plain", tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def server(bentoml_home: Path, served_model_tag: str, tmp_path_factory: pytest.TempPathFactory):
    from tests.support.launch import serve

    log = tmp_path_factory.mktemp("logs") / "serve.log"
    with serve(bentoml_home, log, overrides=SERVER_OVERRIDES, model_tag=served_model_tag) as srv:
        yield srv
