"""Stacks: the local stack's state stays in RXVISION_HOME and its set-up is idempotent; the
Kubernetes GPU stack registers from its file (no cluster needed) and the training pipeline
compiles for it with the GPU, node, toleration and shared-memory settings in the step pod.
Also run.py's one-line user errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import run_py

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_local_stack_keeps_all_state_in_rxvision_home_and_setup_is_idempotent(
    rxvision_home,
) -> None:
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration

    from stacks.setup import ensure_local_stack

    client = Client()
    stack = client.active_stack
    assert stack.name == "rxvision-local"
    assert {c.flavor for c in stack.components.values()} >= {
        "local",
        "mlflow",
        "evidently",
        "bentoml",
    }
    assert Path(stack.artifact_store.path).is_relative_to(rxvision_home.home)
    assert Path(GlobalConfiguration().config_directory).is_relative_to(rxvision_home.home)
    assert Path(os.environ["BENTOML_HOME"]).is_relative_to(rxvision_home.home)
    components_before = {c.id for c in client.list_stack_components(size=100).items}
    assert ensure_local_stack(rxvision_home) == "rxvision-local"  # second call: nothing new
    assert {c.id for c in client.list_stack_components(size=100).items} == components_before
    assert [s.name for s in client.list_stacks(size=100).items].count("rxvision-local") == 1


@pytest.fixture(scope="module")
def k8s_stack(rxvision_home) -> str:
    from stacks.register import register_stack

    name = register_stack(ROOT / "stacks" / "k8s-gpu.yaml")
    assert register_stack(ROOT / "stacks" / "k8s-gpu.yaml") == name  # idempotent
    return name


def test_k8s_stack_registers_from_its_file(k8s_stack) -> None:
    from zenml.client import Client
    from zenml.enums import StackComponentType as T

    stack = Client().get_stack(k8s_stack)
    flavors = {t: comps[0].flavor_name for t, comps in stack.components.items()}
    assert flavors == {
        T.ORCHESTRATOR: "kubernetes",
        T.ARTIFACT_STORE: "s3",
        T.CONTAINER_REGISTRY: "default",
        T.IMAGE_BUILDER: "kaniko",
        T.EXPERIMENT_TRACKER: "mlflow",
        T.MODEL_REGISTRY: "mlflow",
    }
    assert Client().active_stack_model.name == "rxvision-local"  # registering does not activate


def test_training_pipeline_compiles_for_k8s_with_gpu_pod_settings(k8s_stack, tiny_config) -> None:
    from zenml.client import Client
    from zenml.integrations.kubernetes.manifest_utils import build_pod_manifest
    from zenml.stack import Stack

    from pipelines import read_run_config
    from pipelines.training import compile_training

    profile, rx_sections, options = read_run_config(ROOT / "configs" / "k8s-gpu.yaml")
    assert profile == "full"
    cfg = tiny_config(config_file=rx_sections)
    assert cfg.training.devices == 4 and cfg.training.precision == "16"
    snapshot = compile_training(cfg, options, k8s_stack)
    train = snapshot.step_configurations["train_model"]
    assert train.config.experiment_tracker == "rxvision-mlflow-remote"
    assert train.config.settings["resources"].gpu_count == 4
    orchestrator = Stack.from_model(Client().get_stack(k8s_stack)).orchestrator
    pod = build_pod_manifest(
        pod_name="train",
        image_name="rxvision:test",
        command=["python"],
        args=[],
        privileged=False,
        pod_settings=orchestrator.get_settings(train).pod_settings,
    ).to_dict()["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    shm = next(m for m in container["volume_mounts"] if m["name"] == "dshm")
    assert shm.get("mountPath", shm.get("mount_path")) == "/dev/shm"
    shm_volume = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm_volume.get("emptyDir", shm_volume.get("empty_dir"))["medium"] == "Memory"
    assert pod["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    load = orchestrator.get_settings(snapshot.step_configurations["load_data"]).pod_settings
    assert [v["name"] for v in load.volumes] == ["data"]  # every step pod sees the dataset


def test_stack_file_missing_variable_is_a_clear_error(rxvision_home, tmp_path) -> None:
    from rxvision.errors import RxVisionError
    from stacks.register import register_stack

    spec = tmp_path / "stack.yaml"
    spec.write_text(
        "name: broken\ncomponents:\n  orchestrator:\n    name: o\n    flavor: local\n"
        "  artifact_store:\n    name: a\n    flavor: local\n"
        "    configuration: {path: ${RXVISION_TEST_UNSET_VARIABLE}}\n"
    )
    os.environ.pop("RXVISION_TEST_UNSET_VARIABLE", None)
    with pytest.raises(RxVisionError, match="RXVISION_TEST_UNSET_VARIABLE"):
        register_stack(spec)


def test_run_configs_are_in_zenml_format_and_validate(tmp_path) -> None:
    """Every configs/*.yaml holds ZenML run options plus `parameters.config`, which the
    pipelines' typed config parameter accepts (layered on its profile)."""
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration

    from pipelines import RunConfig, read_run_config
    from rxvision.config import RxVisionConfig

    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        profile, sections, options = read_run_config(path)
        PipelineRunConfiguration.model_validate(options)  # ZenML's own schema for the rest
        from pydantic import TypeAdapter

        cfg = TypeAdapter(RunConfig).validate_python({"profile": profile, **sections})
        assert isinstance(cfg, RxVisionConfig) and cfg.profile == (profile or "demo")
    old = tmp_path / "old.yaml"
    old.write_text("training: {epochs: 2}\nzenml: {enable_cache: false}\n")
    from rxvision.errors import RxVisionError

    with pytest.raises(RxVisionError, match="not a ZenML run config"):
        read_run_config(old)


def test_env_exports_point_at_each_state_folder_and_leave_the_checkout_alone(tmp_path) -> None:
    """`python run.py --env` for two state folders from one checkout: each gets its own ZenML
    repository and store; the checkout's own .zen (if any) is not rewritten."""
    checkout_zen = ROOT / ".zen" / "config.yaml"
    before = checkout_zen.read_bytes() if checkout_zen.is_file() else None
    exports = {}
    for name in ("one", "two"):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ZENML_", "BENTOML_", "MLFLOW_"))
        }
        proc = run_py(["--env"], tmp_path / name, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stdout.splitlines()
        assert lines and all(line.startswith("export ") for line in lines), proc.stdout
        exports[name] = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        assert (tmp_path / name / ".zen").is_dir()
    for name, values in exports.items():
        home = tmp_path / name
        assert Path(values["ZENML_CONFIG_PATH"]).is_relative_to(home)
        assert values["ZENML_REPOSITORY_PATH"] == str(home)
        assert Path(values["BENTOML_HOME"]).is_relative_to(home)
        assert values["MLFLOW_TRACKING_URI"].startswith("sqlite:///" + str(home))
        assert values["ZENML_ANALYTICS_OPT_IN"] == "false"
    after = checkout_zen.read_bytes() if checkout_zen.is_file() else None
    assert after == before


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--pipeline", "trainin"], "unknown pipeline 'trainin'"),
        (["--config", "no/such/file.yaml"], "config file not found"),
        (["--set", "training.epochz=3"], "unknown key 'training.epochz'"),
        (["--profile", "huge"], "unknown profile 'huge'"),
        (["--to", "production"], "go with --promote VERSION"),
        (["--promote", "1"], "--promote needs --to"),
    ],
)
def test_run_py_user_errors_are_one_line_without_traceback(argv, expected, tmp_path) -> None:
    proc = run_py(argv, tmp_path / "home", timeout=300)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")


_SWITCH_HOMES = """
import sys
from pathlib import Path
from stacks.setup import configure_environment
first, second = Path(sys.argv[1]), Path(sys.argv[2])
configure_environment(first, repository=first / "repo")
import bentoml
with bentoml.models.create("probe-first"):
    pass
configure_environment(second, repository=second / "repo")
with bentoml.models.create("probe-second"):
    pass
"""


def test_switching_state_folders_in_one_process_moves_bentoml_too(tmp_path: Path):
    # BentoML resolves its home once per process; models saved after a switch must land in
    # the new folder, where a `bentoml serve` started with that BENTOML_HOME looks for them.
    first, second = tmp_path / "first", tmp_path / "second"
    for home in (first, second):
        (home / "repo").mkdir(parents=True)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _SWITCH_HOMES, str(first), str(second)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (first / "bentoml" / "models" / "probe-first").is_dir()
    assert (second / "bentoml" / "models" / "probe-second").is_dir()
    assert not (first / "bentoml" / "models" / "probe-second").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "stack file not found"),
        ("name: [unclosed\n", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping"),
        ("name: x\n", "needs `name:` and a `components:` mapping"),
        (
            "name: x\ncomponents:\n  teleporter: {name: t, flavor: f}\n",
            "unknown component type 'teleporter'",
        ),
    ],
)
def test_bad_stack_files_are_named_errors(tmp_path: Path, text, message):
    from rxvision.errors import RxVisionError
    from stacks.register import read_stack_file

    path = tmp_path / "stack.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(RxVisionError, match=message):
        read_stack_file(path)


def test_a_user_error_inside_a_step_is_one_line_without_traceback(tmp_path) -> None:
    """The data step refuses an empty image under policy fail: ZenML's failed-step notice
    stays, its traceback does not, and run.py ends with the one-line error naming the file."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "pills"
    rng = np.random.default_rng(0)
    for label in ("round_white", "oval_blue"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                root / label / f"{i}.png"
            )
    (root / "oval_blue" / "empty.png").write_bytes(b"")
    argv = [
        "--pipeline",
        "training",
        "--set",
        "data.source=imagefolder",
        "--set",
        f"data.path={root}",
        "--set",
        "data.validation.policy=fail",
    ]
    proc = run_py(argv, tmp_path / "home", timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    error = proc.stderr[proc.stderr.rindex("error: ") :]
    assert "empty.png" in error, proc.stderr[-2000:]
