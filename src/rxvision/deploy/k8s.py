"""Kubernetes manifests for the service, from the config's ``kubernetes`` and ``serving``
sections: a Deployment (the Bento's image, CPU/memory/GPU requests, readiness on /readyz,
liveness on /livez, the API key from a Secret, Prometheus scrape annotations), a Service and
a HorizontalPodAutoscaler on CPU.

    python -m rxvision.deploy.k8s --image registry.example.com/rxvision:TAG > rxvision.yaml
    kubectl apply -f rxvision.yaml

Plain dictionaries (no cluster, no client needed); tests validate them against the
Kubernetes schema offline.
"""

from __future__ import annotations

import argparse
import sys
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
