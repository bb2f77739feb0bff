"""Start a real ``bentoml serve`` of the RxVision service in the background and wait until it
is ready; used by the serving tests and the benchmarks (the deployment pipeline uses ZenML's
BentoML deployer instead)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from rxvision.errors import RxVisionError

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path
    startup_s: float


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float) -> float:
    """Poll /readyz until 200; seconds waited. Raises if the process dies or time runs out."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if process.poll() is not None:
            raise RxVisionError(
                f"bentoml serve exited with code {process.returncode} before it was ready"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.perf_counter() - start
        time.sleep(0.2)
    raise RxVisionError(f"bentoml serve at {url} was not ready after {timeout_s:.0f} s")


def stop(process: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM the server's process group (workers included), then SIGKILL if needed."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextlib.contextmanager
def serve(
    bentoml_home: Path,
    log_path: Path,
    overrides: list[str] | tuple[str, ...] = (),
    model_tag: str | None = None,
    port: int | None = None,
    timeout_s: float = 240,
    extra_env: dict[str, str] | None = None,
    target: str = "bentos.service:RxVision",
) -> Iterator[Server]:
    """Run ``bentoml serve <target>`` (default the RxVision service) on 127.0.0.1 with
    ``bentoml_home`` as the model store and ``overrides`` as RXVISION_OVERRIDES; yields once
    /readyz answers 200."""
    port = port or free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "RXVISION_OVERRIDES": " ".join(overrides),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
        ),
        **(extra_env or {}),
    }
    if model_tag:
        env["RXVISION_MODEL_TAG"] = model_tag
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    cmd = [str(bentoml_cli), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        startup = wait_ready(url, process, timeout_s)
        yield Server(url=url, process=process, log_path=log_path, startup_s=startup)
    except RxVisionError as exc:
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.is_file() else ""
        raise RxVisionError(f"{exc.problem}\n--- server log ---\n{tail}") from None
    finally:
        stop(process)
