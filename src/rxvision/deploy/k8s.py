"""Kubernetes manifests for the service, from the config's ``kubernetes`` and ``serving``
sections: a Deployment (the Bento's image, CPU/memory/GPU requests, readiness on /readyz,
liveness on /livez, the API key from a Secret, Prometheus scrape annotations), a Service and
a HorizontalPodAutoscaler on CPU.

    python -m rxvision.deploy.k8s --image registry.example.com/rxvision:TAG > rxvision.yaml
    kubectl apply --server-side --field-manager=rxvision -f rxvision.yaml

Plain dictionaries (no cluster, no client needed); tests validate them against the
Kubernetes schema offline. The deployment pipeline on a stack with an image builder renders
them for the image it built, shows them in the dashboard (``manifests_html``) and applies
them with ``apply_if_asked`` (server-side apply through the kubernetes client).
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from rxvision.config import KubernetesConfig, RxVisionConfig
from rxvision.errors import RxVisionError


def render_manifests(cfg: RxVisionConfig, image: str | None = None) -> list[dict[str, Any]]:
    """[Deployment, Service, HorizontalPodAutoscaler] for ``image`` (default: the config's)."""
    k8s: KubernetesConfig = cfg.kubernetes
    image = image or k8s.image
    if not image:
        raise RxVisionError(
            "no container image for the Kubernetes deployment",
            "pass --image REGISTRY/rxvision:TAG or set kubernetes.image",
        )
    port = cfg.serving.port
    labels = {"app.kubernetes.io/name": k8s.name, "app.kubernetes.io/part-of": "rxvision"}
    meta = {"name": k8s.name, "namespace": k8s.namespace, "labels": labels}
    requests = {"cpu": k8s.cpu_request, "memory": k8s.memory_request}
    limits = {k: v for k, v in (("cpu", k8s.cpu_limit), ("memory", k8s.memory_limit)) if v}
    if k8s.gpu_count:  # GPUs are requested through limits (requests must equal them)
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(k8s.gpu_count)
    env = [{"name": "RXVISION_PROFILE", "value": cfg.profile}]
    if k8s.api_key_secret:
        env.append(
            {
                "name": "RXVISION_API_KEY",
                "valueFrom": {
                    "secretKeyRef": {"name": k8s.api_key_secret, "key": k8s.api_key_secret_key}
                },
            }
        )

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    container = {
        "name": "rxvision",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "args": ["--port", str(port)] if port != 3000 else [],
        "env": env,
        "resources": {"requests": requests, **({"limits": limits} if limits else {})},
        # the model loads and warms up before /readyz answers 200 (about 5 s on a CPU)
        "startupProbe": probe("/readyz", 5, 60),
        "readinessProbe": probe("/readyz", 10, 3),
        "livenessProbe": probe("/livez", 20, 3),
    }
    if not container["args"]:
        del container["args"]
    pod_spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 30}
    if k8s.node_selector:
        pod_spec["nodeSelector"] = dict(k8s.node_selector)
    if k8s.gpu_count:
        pod_spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": k8s.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": k8s.service_type,
            "selector": labels,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": k8s.name},
            "minReplicas": k8s.min_replicas,
            "maxReplicas": k8s.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": k8s.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }
    return [deployment, service, hpa]


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """One multi-document YAML for ``kubectl apply -f``."""
    return yaml.safe_dump_all(manifests, sort_keys=False)


# ------------------------------------------------------------------------ applying
FIELD_MANAGER = "rxvision"  # the owner of the fields we apply (server-side apply)


def kubectl_command(path: str | Path) -> str:
    """The command that applies the manifests file the same way the pipeline would."""
    return f"kubectl apply --server-side --field-manager={FIELD_MANAGER} -f {path}"


def connect(
    context: str | None = None, config_file: str | Path | None = None, timeout_s: float = 5.0
) -> tuple[Any | None, str]:
    """(a kubernetes ApiClient, "") when the cluster answers, else (None, why not). Inside a
    pod without a named context: the pod's service account; else the kubeconfig
    (``config_file``, $KUBECONFIG or ~/.kube/config) and ``context`` (None: its current)."""
    try:
        from kubernetes import client, config
    except ImportError:
        return None, "the kubernetes Python client is not installed (pip install kubernetes)"
    try:
        if context is None and config_file is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config()
            api = client.ApiClient()
        else:
            config_file = config_file or os.environ.get("KUBECONFIG") or "~/.kube/config"
            api = config.new_client_from_config(
                config_file=str(Path(config_file).expanduser()),
                context=context,
                persist_config=False,
            )
    except Exception as exc:  # noqa: BLE001 - ConfigException, OSError, TypeError, ...
        return None, f"no usable kubeconfig ({_first_line(exc)})"
    try:
        client.VersionApi(api).get_code(_request_timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - connection errors, ApiException (401, ...)
        return None, f"the cluster at {api.configuration.host} did not answer ({_first_line(exc)})"
    return api, ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def object_path(manifest: dict[str, Any]) -> str:
    """The REST path of a namespaced object (core ``v1`` or a ``group/version``)."""
    version = manifest["apiVersion"]
    prefix = f"/apis/{version}" if "/" in version else f"/api/{version}"
    meta = manifest["metadata"]
    # the plural is the lower-case kind + "s" for the three kinds we render
    return f"{prefix}/namespaces/{meta['namespace']}/{manifest['kind'].lower()}s/{meta['name']}"


def apply_manifests(api: Any, manifests: list[dict[str, Any]]) -> list[str]:
    """Server-side apply of each manifest (created or updated, our fields forced); returns
    ``Kind/name`` of each. A refusal by the cluster is an RxVisionError naming the object."""
    from kubernetes.client.exceptions import ApiException

    applied = []
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            api.call_api(
                object_path(manifest),
                "PATCH",
                query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                header_params={
                    "Content-Type": "application/apply-patch+yaml",
                    "Accept": "application/json",
                },
                body=manifest,
                auth_settings=["BearerToken"],
                response_type="object",
                _return_http_data_only=True,
                _request_timeout=30,
            )
        except ApiException as exc:
            raise RxVisionError(
                f"the cluster refused {name} in namespace "
                f"'{manifest['metadata']['namespace']}': {exc.status} {exc.reason}",
                "create the namespace and check that you may apply there "
                f"(kubectl auth can-i patch {manifest['kind'].lower()}s -n "
                f"{manifest['metadata']['namespace']})",
            ) from None
        applied.append(name)
    return applied


def apply_if_asked(
    cfg: RxVisionConfig, manifests: list[dict[str, Any]], config_file: str | Path | None = None
) -> dict[str, Any]:
    """Apply when ``kubernetes.apply`` is true and the cluster answers; otherwise say why not.
    Returns {applied, reason, objects, context}: what the step records and the summary shows."""
    k8s = cfg.kubernetes
    outcome: dict[str, Any] = {"applied": False, "objects": [], "context": k8s.context}
    if not k8s.apply:
        outcome["reason"] = "not asked (kubernetes.apply is false)"
        return outcome
    api, why = connect(k8s.context, config_file)
    if api is None:
        outcome["reason"] = why
        return outcome
    outcome.update(applied=True, reason="applied", objects=apply_manifests(api, manifests))
    return outcome


def manifests_html(manifests: list[dict[str, Any]], outcome: dict[str, Any], command: str) -> str:
    """A script-free page for the dashboard: what the manifests ask for, whether they were
    applied (or the command that applies them), and the YAML itself."""
    deployment, service, hpa = manifests
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    resources = container["resources"]
    env = {e["name"]: e for e in container.get("env", [])}
    key = env.get("RXVISION_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef")
    spec = hpa["spec"]
    cpu = spec["metrics"][0]["resource"]["target"]["averageUtilization"]
    rows = [
        ("image", container["image"]),
        (
            "namespace / name",
            f"{deployment['metadata']['namespace']} / {deployment['metadata']['name']}",
        ),
        ("replicas", str(deployment["spec"]["replicas"])),
        ("autoscaling", f"{spec['minReplicas']}..{spec['maxReplicas']} pods at {cpu} % CPU"),
        ("requests", ", ".join(f"{k}={v}" for k, v in resources["requests"].items())),
        ("limits", ", ".join(f"{k}={v}" for k, v in resources.get("limits", {}).items()) or "none"),
        ("readiness", container["readinessProbe"]["httpGet"]["path"]),
        ("API key", f"Secret {key['name']}, key {key['key']}" if key else "none"),
        ("service", f"{service['spec']['type']} port {service['spec']['ports'][0]['port']}"),
        (
            "applied",
            ", ".join(outcome["objects"])
            if outcome.get("applied")
            else f"no: {outcome.get('reason')}",
        ),
        ("apply with", command),
    ]
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Kubernetes manifests</title>"
        "<style>body{font-family:sans-serif;margin:1em}th{text-align:left;padding-right:1em}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}</style></head><body>"
        "<h2>Kubernetes manifests: Deployment, Service, HorizontalPodAutoscaler</h2>"
        f"<table>{table}</table><pre>{html.escape(to_yaml(manifests))}</pre></body></html>"
    )


def main(argv: list[str] | None = None) -> int:
    from rxvision.config import load_config

    parser = argparse.ArgumentParser(
        prog="python -m rxvision.deploy.k8s",
        description="Print the service's Kubernetes manifests.",
    )
    parser.add_argument("--image", help="the Bento's container image (default kubernetes.image)")
    parser.add_argument("--profile", default="demo")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. --set kubernetes.replicas=3",
    )
    args = parser.parse_args(argv)
    try:
        manifests = render_manifests(load_config(args.profile, None, args.overrides), args.image)
    except RxVisionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(to_yaml(manifests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
