"""The Bento is reproducible and lean: `bentoml build` works offline with our pinned
requirements, ships the upload page, and the Dockerfile BentoML generates installs exactly
those pins: no torch, timm or albumentations in the CPU (ONNX Runtime) image."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.serving, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "timm", "albumentations", "scikit-learn", "triton")


def _pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


@pytest.fixture(scope="module")
def built_bento(bentoml_home: Path, served_model_tag: str) -> Path:
    bentoml = Path(sys.executable).with_name("bentoml")
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "RXVISION_MODEL_TAG": served_model_tag,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    proc = subprocess.run(
        [str(bentoml), "build", "-f", "bentos/bentofile.yaml", "."],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    bentos = sorted(
        (bentoml_home / "bentos" / "rxvision").glob("*/bento.yaml"), key=lambda p: p.stat().st_mtime
    )
    assert bentos, proc.stdout[-2000:]
    return bentos[-1].parent


def test_bento_requirements_are_our_pins_without_torch(built_bento: Path) -> None:
    ours = _pins((ROOT / "bentos" / "requirements-cpu.txt").read_text())
    shipped = _pins((built_bento / "env" / "python" / "requirements.txt").read_text())
    assert ours and all(shipped.get(name) == version for name, version in ours.items())
    assert not [name for name in shipped if name in HEAVY]
    assert {"onnxruntime", "bentoml", "numpy", "pillow"} <= set(shipped)


def test_generated_dockerfile_installs_the_pinned_requirements(built_bento: Path) -> None:
    dockerfile = (built_bento / "env" / "docker" / "Dockerfile").read_text()
    assert "python:3.11" in dockerfile or "3.11" in dockerfile
    assert "requirements.txt" in dockerfile or "install.sh" in dockerfile
    assert "torch" not in dockerfile
    assert (built_bento / "src" / "bentos" / "ui" / "index.html").is_file()
    assert (built_bento / "src" / "bentos" / "service.py").is_file()


def test_requirements_file_is_up_to_date_with_the_environment() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bentos.requirements", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
