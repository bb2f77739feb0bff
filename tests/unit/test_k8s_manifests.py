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


# --------------------------------------------------------------- applying to a cluster
VERSION = {  # /version of a real API server (the client checks every field is there)
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0",
    "gitCommit": "7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T17:27:03Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class _ApiServer:
    """A small stand-in for the Kubernetes API server (the library's unit tier may use
    fakes): answers /version and records each PATCH with its query and body."""

    def __init__(self, refuse: str | None = None) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.patches: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(200, VERSION)

            def do_PATCH(self) -> None:
                url = urlsplit(self.path)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.patches.append(
                    {
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "type": self.headers["Content-Type"],
                        "body": body,
                    }
                )
                if refuse and refuse in url.path:
                    self._answer(403, {"kind": "Status", "reason": "Forbidden", "code": 403})
                else:
                    self._answer(200, body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _kubeconfig(tmp_path, server_url: str):
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters: [{{name: c, cluster: {{server: '{server_url}'}}}}]\n"
        "users: [{name: u, user: {token: t0ken}}]\n"
        "contexts: [{name: test, context: {cluster: c, user: u}}]\n"
    )
    return path


def test_apply_is_server_side_for_each_manifest_when_asked(tmp_path):
    from rxvision.deploy.k8s import apply_if_asked

    cfg = load_config("demo", None, ["kubernetes.apply=true", "kubernetes.namespace=pills"])
    manifests = render_manifests(cfg, "img:5")
    api = _ApiServer()
    try:
        outcome = apply_if_asked(cfg, manifests, _kubeconfig(tmp_path, api.url))
    finally:
        api.close()
    assert outcome["applied"] and outcome["objects"] == [
        "Deployment/rxvision",
        "Service/rxvision",
        "HorizontalPodAutoscaler/rxvision",
    ]
    assert [p["path"] for p in api.patches] == [
        "/apis/apps/v1/namespaces/pills/deployments/rxvision",
        "/api/v1/namespaces/pills/services/rxvision",
        "/apis/autoscaling/v2/namespaces/pills/horizontalpodautoscalers/rxvision",
    ]
    for patch, manifest in zip(api.patches, manifests, strict=True):
        assert patch["type"] == "application/apply-patch+yaml"
        assert patch["query"] == {"fieldManager": ["rxvision"], "force": ["true"]}
        assert patch["body"] == manifest


def test_apply_is_skipped_unless_asked_or_when_the_cluster_does_not_answer(tmp_path):
    from rxvision.deploy.k8s import apply_if_asked
    from tests.support.launch import free_port

    manifests = render_manifests(load_config("demo"), "img:6")
    api = _ApiServer()
    try:
        not_asked = apply_if_asked(load_config("demo"), manifests, _kubeconfig(tmp_path, api.url))
    finally:
        api.close()
    assert not not_asked["applied"] and "kubernetes.apply is false" in not_asked["reason"]
    assert api.patches == []
    asked = load_config("demo", None, ["kubernetes.apply=true"])
    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = apply_if_asked(asked, manifests, _kubeconfig(tmp_path, dead))
    assert (
        not unreachable["applied"]
        and f"the cluster at {dead} did not answer" in unreachable["reason"]
    )
    missing = apply_if_asked(asked, manifests, tmp_path / "no-such-kubeconfig")
    assert not missing["applied"] and "no usable kubeconfig" in missing["reason"]


def test_a_refused_apply_is_a_user_error_naming_the_object(tmp_path):
    from rxvision.deploy.k8s import apply_if_asked

    cfg = load_config("demo", None, ["kubernetes.apply=true"])
    api = _ApiServer(refuse="/services/")
    try:
        with pytest.raises(RxVisionError, match="refused Service/rxvision .* 403") as err:
            apply_if_asked(cfg, render_manifests(cfg, "img:7"), _kubeconfig(tmp_path, api.url))
    finally:
        api.close()
    assert "kubectl auth can-i patch services -n rxvision" in str(err.value)


def test_dashboard_page_shows_the_requests_and_the_apply_line_without_scripts():
    from rxvision.deploy.k8s import kubectl_command, manifests_html

    cfg = load_config("demo", None, ["kubernetes.gpu_count=1", "kubernetes.replicas=3"])
    manifests = render_manifests(cfg, "registry.example/rxvision:8")
    command = kubectl_command("rxvision-k8s.yaml")
    page = manifests_html(manifests, {"applied": False, "reason": "not asked"}, command)
    assert "<script" not in page.lower()
    assert "registry.example/rxvision:8" in page and "nvidia.com/gpu=1" in page
    assert "/readyz" in page and "Secret rxvision-api-key" in page
    assert "kubectl apply --server-side --field-manager=rxvision -f rxvision-k8s.yaml" in page
    assert "no: not asked" in page and "kind: HorizontalPodAutoscaler" in page
