"""The library must stay usable without the orchestration and serving frameworks."""

import subprocess
import sys
from pathlib import Path

import pytest

import rxvision

LIBRARY_ROOT = Path(rxvision.__file__).parent
FORBIDDEN = ("zenml", "bentoml")


def _library_modules() -> list[str]:
    names = []
    for path in sorted(LIBRARY_ROOT.rglob("*.py")):
        rel = path.relative_to(LIBRARY_ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_library_source_never_imports_zenml_or_bentoml():
    offenders = []
    for path in LIBRARY_ROOT.rglob("*.py"):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from"):
                top = words[1].split(".")[0].rstrip(",")
                if top in FORBIDDEN:
                    offenders.append(f"{path.relative_to(LIBRARY_ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "library imports a framework:\n" + "\n".join(offenders)


def test_importing_every_library_module_loads_no_framework():
    modules = _library_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"frameworks imported by the library: {out.stdout.strip()}"


@pytest.mark.parametrize("package", ["rxvision.data", "rxvision.models", "rxvision.export"])
def test_lazy_packages_export_exactly_what_they_list(package: str) -> None:
    """Each lazily loaded package's ``__all__`` names resolve, and its lazy table has no extras."""
    import importlib

    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    lazy = getattr(module, "_EXPORTS", None) or module._LAZY
    assert set(lazy) <= set(module.__all__)
