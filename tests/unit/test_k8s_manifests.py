"""The Kubernetes manifests rendered from the config are valid against the Kubernetes schema
(offline, kubernetes-validate) and carry what the config asks for."""

from __future__ import annotations

import pytest

from rxvision.config import load_config
from rxvision.deploy.k8s import main, render_manifests, to_yaml
from rxvision.errors import RxVisionError

kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the dev extras")


def _validate(manifests):
    version = kv.latest_version()
    for manifest in manifests:
        kv.validate(manifest, version, strict=True)


def test_default_manifests_validate_and_probe_readyz():
    cfg = load_config("demo")
    manifests = render_manifests(cfg, "registry.example/rxvision:1")
    _validate(manifests)
    deployment, service, hpa = manifests
    assert [m["kind"] for m in manifests] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert (
        container["ports"][0]["containerPort"]
        == cfg.serving.port
        == service["spec"]["ports"][0]["port"]
    )
    key = next(e for e in container["env"] if e["name"] == "RXVISION_API_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "rxvision-api-key", "key": "api-key"}
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_config_sets_replicas_gpus_and_port():
    cfg = load_config(
        "demo",
        None,
        [
            "kubernetes.replicas=3",
            "kubernetes.max_replicas=5",
            "kubernetes.gpu_count=1",
            "serving.port=8080",
            "kubernetes.api_key_secret=null",
            "kubernetes.node_selector={pool: gpu}",
        ],
    )
    manifests = render_manifests(cfg, "img:2")
    _validate(manifests)
    deployment, _service, hpa = manifests
    pod = deployment["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    assert (
        pod["nodeSelector"] == {"pool": "gpu"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    )
    assert pod["containers"][0]["args"] == ["--port", "8080"]
    assert not any(e["name"] == "RXVISION_API_KEY" for e in pod["containers"][0]["env"])
    assert deployment["spec"]["replicas"] == 3 and hpa["spec"]["maxReplicas"] == 5


def test_a_broken_manifest_is_caught_by_the_schema():
    deployment = render_manifests(load_config("demo"), "img:3")[0]
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kv.ValidationError):
        _validate([deployment])


def test_missing_image_and_bad_bounds_are_user_errors(capsys):
    with pytest.raises(RxVisionError, match="no container image"):
        render_manifests(load_config("demo"))
    with pytest.raises(RxVisionError, match="min_replicas <= replicas <= max_replicas"):
        load_config("demo", None, ["kubernetes.replicas=20"])
    assert main(["--set", "kubernetes.image=img:4"]) == 0
    assert "kind: HorizontalPodAutoscaler" in capsys.readouterr().out
    assert to_yaml([{"a": 1}, {"b": 2}]).count("---") == 1
