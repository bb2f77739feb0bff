"""The deployment pipeline on a stack without a BentoML model deployer but with an image
builder (what the Kubernetes stack has): real ZenML stacks registered in this module's own
state folder with ZenML's `local` (Docker) image builder flavor. Without a Docker daemon the
run builds the Bento and its image build context, then stops at the image build with one line
naming what is missing; with a daemon the image is built and the manifests rendered."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from zenml import Model, pipeline

pytestmark = pytest.mark.integration

REGISTRY = "localhost:5000/rxvision"
ROOT = Path(__file__).resolve().parents[2]


def _docker() -> tuple[bool, str]:
    from bentos.store import docker_status

    return docker_status()


@pytest.fixture(scope="module")
def trained(isolated_home, tiny_config):
    """A tiny production model in this module's own state folder (on rxvision-local)."""
    from pipelines.training import run_training

    cfg = tiny_config("export.parity_images=4")
    run_training(cfg)
    return cfg


def _register(tmp_path: Path, name: str, extra: str) -> str:
    """A stack of the local orchestrator and artifact store (where the model's artifacts
    are) plus ``extra`` components, registered from a stack file like stacks/*.yaml."""
    from stacks.register import register_stack

    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\ncomponents:\n"
        "  orchestrator: {name: rxvision-local-orchestrator, flavor: local}\n"
        "  artifact_store:\n    name: rxvision-local-artifacts\n    flavor: local\n"
        "    configuration:\n      path: ${RXVISION_HOME}/artifacts\n" + extra
    )
    return register_stack(spec)


@pytest.fixture()
def on_stack(trained) -> Iterator:
    """Run on a given stack for one test; the module's active stack comes back after."""
    from stacks.setup import use_stack

    saved = os.environ.get("ZENML_ACTIVE_STACK_ID")

    def use(name: str) -> None:
        use_stack(name)

    yield use
    if saved is None:
        os.environ.pop("ZENML_ACTIVE_STACK_ID", None)
    else:
        os.environ["ZENML_ACTIVE_STACK_ID"] = saved


def _last_deployment_run():
    from zenml.client import Client

    from pipelines.deployment import PIPELINE_NAME

    return Client().get_pipeline(PIPELINE_NAME).last_run


def _deploy_with_run_py(home: Path, stack: str):
    """`python run.py --pipeline deployment --stack NAME` on this module's state folder, in
    its own process: a process builds one Bento (the service module pins its model when
    BentoML imports it, and test_deployment.py builds another in this process)."""
    from tests.integration.conftest import TINY_OVERRIDES
    from tests.support.cli import run_py

    env = {k: v for k, v in os.environ.items() if k != "ZENML_ACTIVE_STACK_ID"}
    sets = [a for o in (*TINY_OVERRIDES, "export.parity_images=4") for a in ("--set", o)]
    return run_py(["--pipeline", "deployment", "--stack", stack, *sets], home, 900, env=env)


@pytest.mark.skipif(_docker()[0], reason="a Docker daemon answers here: the build succeeds")
def test_without_a_daemon_the_run_builds_the_context_and_stops_with_one_line(
    trained, isolated_home, tmp_path
) -> None:
    from zenml.enums import ExecutionStatus

    stack = _register(
        tmp_path,
        "rxvision-image-builder-test",
        "  image_builder: {name: rxvision-test-docker-builder, flavor: local}\n"
        "  container_registry:\n    name: rxvision-test-registry\n    flavor: default\n"
        f"    configuration: {{uri: '{REGISTRY}'}}\n",
    )
    proc = _deploy_with_run_py(isolated_home.home, stack)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr[proc.stderr.rindex("error: ") :]
    problem = message.splitlines()[0]  # one line, then the hint
    assert "image builder 'rxvision-test-docker-builder' (local) cannot build" in problem
    assert f"{REGISTRY}/rxvision:" in message and "No container engine is available" in message
    assert "`bento_build_context` artifact" in message  # the hint: how to build it by hand

    run = _last_deployment_run()
    assert "deploy_bento" not in run.steps  # the BentoML deployer path did not run
    assert run.steps["build_bento_image"].status == ExecutionStatus.FAILED
    context = Path(run.steps["save_build_context"].outputs["bento_build_context"][0].load())
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile == (context / "env" / "docker" / "Dockerfile").read_text()
    assert "COPY" in dockerfile and "--mount=type=cache" not in dockerfile  # no BuildKit
    assert "torch" not in dockerfile
    assert (context / "bento.yaml").is_file()
    assert (context / "src" / "bentos" / "service.py").is_file()
    assert (context / "env" / "python" / "requirements.txt").is_file()
    tag = run.steps["save_to_bentoml"].outputs["bentoml_model_tag"][0].load()
    name, version = tag.split(":")
    model = context / "models" / name / version
    assert (model / "bundle" / "model.onnx").is_file() and (model / "model.yaml").is_file()


def test_the_local_stack_keeps_the_bentoml_deployer_path(isolated_home) -> None:
    from zenml.client import Client

    from steps.k8s_deploy import BENTOML_TARGET, deployment_target

    assert Client().active_stack_model.name == "rxvision-local"
    assert deployment_target() == BENTOML_TARGET  # its BentoML model deployer


def test_a_stack_that_can_deploy_nowhere_is_a_clear_error(trained, on_stack, tmp_path) -> None:
    from pipelines.deployment import run_deployment
    from rxvision.errors import RxVisionError

    on_stack(_register(tmp_path, "rxvision-no-deployer-test", ""))
    with pytest.raises(
        RxVisionError, match="neither a BentoML model deployer nor an image builder"
    ):
        run_deployment(trained)


@pytest.mark.slow
@pytest.mark.skipif(not _docker()[0], reason=f"no Docker daemon here: {_docker()[1]}")
def test_with_a_daemon_the_image_is_built_and_the_manifests_rendered(
    trained, isolated_home, tmp_path
) -> None:
    import subprocess

    import yaml

    # no registry: the image stays in the local daemon (a push needs a registry to exist)
    stack = _register(
        tmp_path,
        "rxvision-docker-build-test",
        "  image_builder: {name: rxvision-test-docker-builder, flavor: local}\n",
    )
    proc = _deploy_with_run_py(isolated_home.home, stack)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    steps = _last_deployment_run().steps
    image = steps["build_bento_image"].outputs["bento_image"][0].load()
    assert image.startswith("rxvision:")
    manifests_file = isolated_home.home / "k8s" / "rxvision-k8s.yaml"
    inspect = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, check=False
    )
    assert inspect.returncode == 0, inspect.stderr
    manifests = list(yaml.safe_load_all(manifests_file.read_text()))
    assert manifests[0]["spec"]["template"]["spec"]["containers"][0]["image"] == image


@pipeline(
    name="rxvision_k8s_render_test",
    enable_cache=False,
    model=Model(name="rxvision-classifier", version="production"),
)
def _render_only(config: dict, image: str) -> None:
    """The Kubernetes branch's last step alone (the image is given, not built here)."""
    from steps.k8s_deploy import render_k8s_manifests

    render_k8s_manifests(image, config)


def test_manifests_step_renders_valid_yaml_a_dashboard_page_and_says_why_not_applied(
    trained, tmp_path, monkeypatch
) -> None:
    import yaml
    from zenml.client import Client

    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate: dev extras")
    from tests.support.launch import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # a kubeconfig whose cluster is not there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: c, cluster: {{server: '{dead}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cfg = trained.model_copy(deep=True)
    cfg.kubernetes.apply, cfg.kubernetes.replicas, cfg.kubernetes.gpu_count = True, 3, 1
    run = _render_only(config=cfg.model_dump(mode="json"), image="registry.example/rxvision:9")
    step = Client().get_pipeline_run(run.id).steps["render_k8s_manifests"]
    manifests = list(yaml.safe_load_all(step.outputs["k8s_manifests"][0].load()))
    for manifest in manifests:
        kv.validate(manifest, kv.latest_version(), strict=True)
    deployment = manifests[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/rxvision:9"
    assert deployment["spec"]["replicas"] == 3
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    outcome = step.outputs["k8s_apply"][0].load()
    assert not outcome["applied"] and f"the cluster at {dead} did not answer" in outcome["reason"]
    view = step.outputs["k8s_manifests_view"][0]
    assert view.visualizations  # the dashboard shows the page
    page = view.load()
    assert "kubectl apply --server-side" in page and "<script" not in page.lower()
    meta = Client().get_model_version("rxvision-classifier", "production").run_metadata
    assert meta["kubernetes"]["image"] == "registry.example/rxvision:9"


def test_on_the_k8s_deploy_stack_the_pipeline_compiles_into_the_image_branch(
    trained, tiny_config, on_stack
) -> None:
    """stacks/k8s-deploy.yaml (Kaniko, registry, S3; no cluster needed to register) with
    configs/deployment-k8s.yaml: the image and manifest steps instead of the BentoML deployer."""
    from zenml.client import Client
    from zenml.config.compiler import Compiler
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.stack import Stack

    from pipelines import read_run_config
    from pipelines.deployment import deployment_pipeline
    from stacks.register import register_stack

    name = register_stack(ROOT / "stacks" / "k8s-deploy.yaml")
    profile, sections, options = read_run_config(ROOT / "configs" / "deployment-k8s.yaml")
    assert profile == "full"
    cfg = tiny_config(config_file=sections)  # the file's sections on the tiny demo config
    on_stack(name)
    pipe = deployment_pipeline.copy()
    pipe.prepare(config=cfg)
    snapshot = Compiler().compile(
        pipeline=pipe,
        stack=Stack.from_model(Client().get_stack(name)),
        run_configuration=PipelineRunConfiguration.model_validate(options),
    )
    steps = snapshot.step_configurations
    assert "deploy_bento" not in steps
    image_branch = {"save_build_context", "build_bento_image"}
    image_branch.add("render_k8s_manifests")
    assert image_branch <= set(steps)
    rendered = steps["render_k8s_manifests"].config.parameters["config"]["kubernetes"]
    assert rendered["replicas"] == 2 and rendered["gpu_count"] == 0 and rendered["apply"] is False


def test_summary_shows_the_image_the_manifests_file_and_the_kubectl_line(capsys) -> None:
    from types import SimpleNamespace

    from pipelines.deployment import print_summary
    from rxvision.deploy.k8s import kubectl_command

    k8s = {
        "image": f"{REGISTRY}/rxvision:abc",
        "file": "/state/k8s/rxvision-k8s.yaml",
        "command": kubectl_command("/state/k8s/rxvision-k8s.yaml"),
        "applied": False,
        "reason": "not asked (kubernetes.apply is false)",
        "objects": [],
    }
    summary = {
        "model_version": 3,
        "stage": "production",
        "bento": "rxvision:abc",
        "bentoml_model": "rxvision-classifier:xyz",
        "export": {"parity": {}, "profile": [], "unavailable": {}},
        "container": {"requested": False, "dockerfile": "/b/env/docker/Dockerfile"},
        "kubernetes": k8s,
    }
    print_summary(SimpleNamespace(name="rxvision_deployment-1"), summary)
    out = " ".join(capsys.readouterr().out.split())
    assert k8s["image"] in out and "not asked" in out
    assert "kubectl apply --server-side --field-manager=rxvision -f" in out
    assert "URL" not in out
