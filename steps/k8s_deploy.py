"""Deployment on a stack without a BentoML model deployer but with an image builder (the
Kubernetes stack: Kaniko + a container registry): the Bento's build context (the Dockerfile
BentoML generates + the Bento + its models) -> an image built by the stack's image builder
and pushed to its registry -> Deployment, Service and HPA for that image (an artifact with a
dashboard page) -> applied when ``kubernetes.apply`` asks and the cluster answers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from bentoml._internal.bento import bento as bento_module
from zenml import log_metadata, step
from zenml.logger import get_logger
from zenml.types import HTMLString

from rxvision.errors import RxVisionError
from steps.common import (
    BENTO_IMAGE,
    BUILD_CONTEXT,
    K8S_APPLY,
    K8S_MANIFESTS,
    K8S_MANIFESTS_VIEW,
    to_config,
)

logger = get_logger(__name__)

BENTOML_TARGET, KUBERNETES_TARGET = "bentoml", "kubernetes"


def deployment_target() -> str:
    """Where the active stack deploys: ``bentoml`` (its BentoML model deployer: the local
    path) or ``kubernetes`` (no such deployer, an image builder instead)."""
    from zenml.client import Client
    from zenml.enums import StackComponentType as T

    stack = Client().active_stack_model
    deployers = stack.components.get(T.MODEL_DEPLOYER) or []
    if any(d.flavor_name == "bentoml" for d in deployers):
        return BENTOML_TARGET
    if stack.components.get(T.IMAGE_BUILDER):
        return KUBERNETES_TARGET
    raise RxVisionError(
        f"stack '{stack.name}' can deploy nowhere: it has neither a BentoML model deployer "
        "nor an image builder",
        "run on rxvision-local (BentoML) or rxvision-k8s-gpu (Kaniko + registry), or add one "
        "with `zenml stack update`",
    )


def write_build_context(bento: Any, out: Path) -> Path:
    """The folder `bentoml containerize` builds from: the Bento, its models, and the
    Dockerfile BentoML generates (also at the root, where image builders look for it).

    Private API, isolated here: BentoML's public ``get_containerfile`` writes only the
    Dockerfile, whose ``COPY . ./`` needs the models resolved into the context beside it;
    ``construct_containerfile`` is what `bentoml containerize` itself uses for both. BuildKit
    syntax is off: Kaniko and ZenML's Docker builder do not take ``RUN --mount``."""
    try:
        from bentoml._internal.container import construct_containerfile
    except ImportError as exc:  # guard: the private helper moved upstream
        raise RuntimeError(
            "bentoml._internal.container.construct_containerfile is gone; update "
            "steps/k8s_deploy.py"
        ) from exc
    with construct_containerfile(bento, enable_buildkit=False, add_header=True) as (
        ctx,
        dockerfile,
    ):
        shutil.copytree(ctx, out, dirs_exist_ok=True)
        shutil.copy2(dockerfile, out / "Dockerfile")
    return out


def image_name(registry_uri: str | None, name: str, tag: str) -> str:
    """``<registry>/<name>:<tag>``, or ``<name>:<tag>`` for a stack without a registry."""
    return f"{registry_uri.rstrip('/')}/{name}:{tag}" if registry_uri else f"{name}:{tag}"


@step(enable_cache=False)
def save_build_context(bento: bento_module.Bento) -> Annotated[Path, BUILD_CONTEXT]:
    """The Bento's image build context as an artifact (what the image builder receives)."""
    out = write_build_context(bento, Path(tempfile.mkdtemp(prefix="rxvision-image-")) / "ctx")
    files = [p for p in out.rglob("*") if p.is_file()]
    log_metadata(
        {
            "bento_build_context": {
                "files": len(files),
                "bytes": sum(p.stat().st_size for p in files),
            }
        },
        infer_model=True,
    )
    return out


@step(enable_cache=False)
def build_bento_image(
    build_context: Path, bento: bento_module.Bento, config: dict[str, Any]
) -> Annotated[str, BENTO_IMAGE]:
    """The stack's image builder builds the context and pushes it to the stack's registry."""
    from zenml.client import Client
    from zenml.image_builders import BuildContext

    stack = Client().active_stack
    builder, registry = stack.image_builder, stack.container_registry
    if builder is None:  # a stack changed between compiling and running
        raise RxVisionError(f"stack '{stack.name}' has no image builder", "add one (kaniko)")
    name = image_name(
        registry.config.uri if registry else None,
        to_config(config).kubernetes.name,
        str(bento.tag.version),
    )
    try:
        image = builder.build(
            image_name=name,
            build_context=BuildContext(root=str(build_context)),
            container_registry=registry,
        )
    except Exception as exc:  # noqa: BLE001 - builders raise RuntimeError, Docker, kubectl errors
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RxVisionError(
            f"the stack's image builder '{builder.name}' ({builder.flavor}) cannot build "
            f"{name}: {why}",
            f"fix that and run again, or build this run's `{BUILD_CONTEXT}` artifact (a "
            f"folder) yourself: docker build -t {name} FOLDER",
        ) from None
    log_metadata({"bento_image": image}, infer_model=True)
    return image


@step(enable_cache=False)
def render_k8s_manifests(
    bento_image: str, config: dict[str, Any]
) -> tuple[
    Annotated[str, K8S_MANIFESTS],
    Annotated[dict[str, Any], K8S_APPLY],
    Annotated[HTMLString, K8S_MANIFESTS_VIEW],
]:
    """Deployment, Service and HPA for the image from the ``kubernetes``/``serving`` config
    (YAML), applied when ``kubernetes.apply`` asks and the cluster answers, else not (the
    outcome says why and the `kubectl apply` line), and a page for the dashboard."""
    from rxvision.deploy.k8s import (
        apply_if_asked,
        kubectl_command,
        manifests_html,
        render_manifests,
        to_yaml,
    )

    cfg = to_config(config)
    manifests = render_manifests(cfg, bento_image)
    outcome = apply_if_asked(cfg, manifests)
    command = kubectl_command(f"{cfg.kubernetes.name}-k8s.yaml")
    if not outcome["applied"]:
        logger.warning(
            "Kubernetes manifests not applied: %s. Apply them with: %s", outcome["reason"], command
        )
    log_metadata({"kubernetes": {"image": bento_image, **outcome}}, infer_model=True)
    return to_yaml(manifests), outcome, HTMLString(manifests_html(manifests, outcome, command))


def deploy_to_kubernetes(bento: Any, config: Any) -> None:
    """The pipeline's Kubernetes branch: build context -> image -> manifests (+ apply)."""
    context = save_build_context(bento)
    image = build_bento_image(context, bento, config)
    render_k8s_manifests(image, config)


def kubernetes_summary(run: Any, cfg: Any) -> dict[str, Any]:
    """The Kubernetes branch's outcome for run.py: the image, the manifests saved to
    ``$RXVISION_HOME/k8s/<name>-k8s.yaml`` and the `kubectl apply` line for that file."""
    from rxvision.deploy.k8s import kubectl_command
    from stacks.setup import resolve_home

    step = run.steps["render_k8s_manifests"]
    path = resolve_home() / "k8s" / f"{cfg.kubernetes.name}-k8s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(step.outputs[K8S_MANIFESTS][0].load())
    image = run.steps["build_bento_image"].outputs[BENTO_IMAGE][0].load()
    return {
        "image": image,
        "file": str(path),
        "command": kubectl_command(path),
        **step.outputs[K8S_APPLY][0].load(),
    }
