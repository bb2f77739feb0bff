"""Where RxVision keeps its state, and the local ZenML stack it runs on by default.

Everything a run writes lives under one folder, ``RXVISION_HOME`` (default ``.rxvision/`` in
the project root): the ZenML config and SQLite store, the artifact store (MLflow's tracking
database lives inside it), the BentoML home, the data cache and training run folders. Moving
or deleting that folder moves or resets all state; nothing goes to ``~/.config``.

Call :func:`configure_environment` before ZenML, BentoML or MLflow are used, then
:func:`ensure_local_stack` (idempotent) to get the ``rxvision-local`` stack registered and
active. ``run.py`` does both; the integration tests do the same on a temporary folder.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rxvision.telemetry import disable_telemetry

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = PROJECT_ROOT / ".rxvision"
LOCAL_STACK = "rxvision-local"

LOCAL_STACK_FILE = Path(__file__).resolve().parent / "local.yaml"


@dataclass(frozen=True)
class StatePaths:
    """The folders under RXVISION_HOME, one per kind of state."""

    home: Path
    zenml_config: Path
    artifacts: Path
    bentoml_home: Path
    data_cache: Path
    runs: Path
    repository: Path

    @classmethod
    def under(cls, home: Path, repository: Path | None = None) -> StatePaths:
        home = Path(home).resolve()
        return cls(
            home=home,
            zenml_config=home / "zenml",
            artifacts=home / "artifacts",
            bentoml_home=home / "bentoml",
            data_cache=home / "cache",
            runs=home / "runs",
            # the ZenML repository (.zen) of a state folder lives inside it: two state folders
            # used from one checkout never rewrite each other's active stack
            repository=Path(repository).resolve() if repository else home,
        )


def resolve_home(home: Path | str | None = None) -> Path:
    """The state folder: the argument, else $RXVISION_HOME, else ``.rxvision/`` in the project."""
    if home is None:
        home = os.environ.get("RXVISION_HOME") or DEFAULT_HOME
    return Path(home).expanduser().resolve()


def configure_environment(
    home: Path | str | None = None, repository: Path | str | None = None
) -> StatePaths:
    """Point ZenML, BentoML and MLflow at RXVISION_HOME and switch their telemetry off.

    ``repository`` is where the ZenML repository (``.zen``) lives; the default is the state
    folder itself, so each state folder has its own active stack and a checkout's ``.zen``
    is never rewritten. The project root stays ZenML's source root so that ``steps`` and
    ``pipelines`` resolve (``ZENML_CUSTOM_SOURCE_ROOT``; :func:`cli_environment` exports it
    for the ``zenml`` command).
    """
    paths = StatePaths.under(resolve_home(home), Path(repository) if repository else None)
    disable_telemetry()
    for folder in (
        paths.home,
        paths.zenml_config,
        paths.artifacts,
        paths.bentoml_home,
        paths.data_cache,
        paths.runs,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["RXVISION_HOME"] = str(paths.home)
    os.environ["ZENML_CONFIG_PATH"] = str(paths.zenml_config)
    os.environ["ZENML_LOCAL_STORES_PATH"] = str(paths.zenml_config / "local_stores")
    os.environ["BENTOML_HOME"] = str(paths.bentoml_home)
    os.environ.setdefault("ZENML_ENABLE_REPO_INIT_WARNINGS", "false")
    if paths.repository != PROJECT_ROOT:
        os.environ["ZENML_REPOSITORY_PATH"] = str(paths.repository)
        os.environ["ZENML_CUSTOM_SOURCE_ROOT"] = str(PROJECT_ROOT)
    else:
        os.environ.pop("ZENML_REPOSITORY_PATH", None)
        os.environ.pop("ZENML_CUSTOM_SOURCE_ROOT", None)
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    _reset_zenml_singletons(paths)
    _point_bentoml_at(paths.bentoml_home)
    return paths


def _point_bentoml_at(home: Path) -> None:
    """BentoML resolves its home and stores once per process; a process that switches state
    folders (the test suite, a notebook) must move them too, or models saved here would land
    in the previous folder while a `bentoml serve` started with the new BENTOML_HOME looks in
    this one. Internal names, hence guarded."""
    if "bentoml" not in sys.modules:
        return  # resolved from BENTOML_HOME on first use
    try:
        from bentoml._internal.bento import BentoStore
        from bentoml._internal.configuration.containers import BentoMLContainer as c
        from bentoml._internal.models import ModelStore

        dirs = {name: home / name for name in ("bentos", "models", "envs", "tmp")}
        for folder in dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
        c.bentoml_home.set(str(home))
        c.bento_store_dir.set(str(dirs["bentos"]))
        c.model_store_dir.set(str(dirs["models"]))
        c.env_store_dir.set(str(dirs["envs"]))
        c.tmp_bento_store_dir.set(str(dirs["tmp"]))
        c.bento_store.set(BentoStore(str(dirs["bentos"])))
        c.tmp_bento_store.set(BentoStore(str(dirs["tmp"])))
        c.model_store.set(ModelStore(str(dirs["models"])))
    except Exception:  # best effort: a fresh process reads BENTOML_HOME anyway
        logger.warning("could not point BentoML at %s in this process", home, exc_info=True)


def _reset_zenml_singletons(paths: StatePaths) -> None:
    """ZenML caches its global config and client per process; drop them if already loaded."""
    if "zenml" not in sys.modules:
        return
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.utils import source_utils

    GlobalConfiguration._reset_instance()
    Client._reset_instance()
    source_utils.set_custom_source_root(
        str(PROJECT_ROOT) if paths.repository != PROJECT_ROOT else None
    )


def ensure_local_stack(paths: StatePaths | None = None, activate: bool = True) -> str:
    """Create the ZenML repository and register ``rxvision-local``, activating it unless the
    user has activated another stack; idempotent.

    The stack comes from ``stacks/local.yaml`` (the same file ``python -m stacks.register``
    reads). Components and a stack that already exist are reused, so a second call (or a
    second process) changes nothing. Returns the stack name.
    """
    from zenml.client import Client

    from stacks.register import register_stack

    paths = paths or StatePaths.under(resolve_home(), _env_repository())
    os.environ["RXVISION_HOME"] = str(paths.home)  # the stack file's ${RXVISION_HOME}
    if not Client.is_repository_directory(paths.repository):
        paths.repository.mkdir(parents=True, exist_ok=True)
        Client.initialize(root=paths.repository)
        logger.info("created the ZenML repository at %s", paths.repository)
    name = register_stack(LOCAL_STACK_FILE)
    client = Client()
    # only replace ZenML's own `default` stack: a stack the user activated is respected
    if activate and client.active_stack_model.name == "default":
        client.activate_stack(name)
    return name


def _env_repository() -> Path | None:
    value = os.environ.get("ZENML_REPOSITORY_PATH")
    return Path(value) if value else None


def use_stack(name: str) -> None:
    """Make ``name`` the active stack of this process only (``run.py --stack NAME``)."""
    from zenml.client import Client

    from rxvision.errors import RxVisionError

    client = Client()
    try:
        stack = client.get_stack(name, allow_name_prefix_match=False)
    except KeyError:
        known = ", ".join(s.name for s in client.list_stacks(size=100).items)
        raise RxVisionError(
            f"ZenML stack '{name}' is not registered (known: {known})",
            "register it with `python -m stacks.register stacks/<file>.yaml`",
        ) from None
    os.environ["ZENML_ACTIVE_STACK_ID"] = str(stack.id)


def dashboard_command(paths: StatePaths | None = None, port: int = 8237) -> str:
    """The shell command that opens the ZenML dashboard on this state folder."""
    return f'eval "$(python run.py --env)" && zenml login --local --port {port}'


# what the `zenml`, `mlflow` and `bentoml` commands need to see the state folder
CLI_VARIABLES = (
    "RXVISION_HOME",
    "ZENML_CONFIG_PATH",
    "ZENML_LOCAL_STORES_PATH",
    "ZENML_REPOSITORY_PATH",
    "ZENML_CUSTOM_SOURCE_ROOT",
    "BENTOML_HOME",
)


def cli_environment(paths: StatePaths) -> dict[str, str]:
    """The variables that point the ``zenml``, ``mlflow`` and ``bentoml`` commands at this
    state folder (call after :func:`ensure_local_stack`): its ZenML store and repository, the
    MLflow tracking store of the active stack's tracker, the BentoML home, telemetry off."""
    from zenml.client import Client

    from rxvision.telemetry import TELEMETRY_DEFAULTS

    env = {k: os.environ[k] for k in CLI_VARIABLES if os.environ.get(k)}
    env.setdefault("ZENML_REPOSITORY_PATH", str(paths.repository))
    env.setdefault("ZENML_CUSTOM_SOURCE_ROOT", str(PROJECT_ROOT))
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys(
            filter(None, [str(PROJECT_ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)])
        )
    )
    tracker = Client().active_stack.experiment_tracker
    if tracker is not None and tracker.flavor == "mlflow":
        env["MLFLOW_TRACKING_URI"] = tracker.get_tracking_uri()
        env["MLFLOW_REGISTRY_URI"] = env["MLFLOW_TRACKING_URI"]
    env.update({k: os.environ.get(k, v) for k, v in TELEMETRY_DEFAULTS.items()})
    return env
