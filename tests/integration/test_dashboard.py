"""The ZenML dashboard as a user sees it, on a real tiny training run in a temporary state
folder: the stored step logs (what the dashboard's Logs tab reads) hold no informational line
tagged ERROR while a genuine error still is; and in a real headless Chromium against the local
ZenML server started by `python run.py --dashboard`, the one-time sign-up form, the runs list,
the run's step graph and the reports (validation, Evidently data summary, evaluation, model
card) render with visible content in the dashboard's script-free frame, and a step's Logs tab
shows its stored lines. Screenshots are kept
under the test's tmp dir (their paths are printed)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.browser import launch, sync_playwright
from tests.support.cli import run_py
from tests.support.launch import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# the dashboard draws slowly on 2 busy cores; waits are bounds, not timings under test
BROWSER_TIMEOUT_MS = 180_000
# reports the dashboard must show, with a text each must contain
REPORTS = {
    "validation_report_html": "validation",
    "data_quality_report": "brightness",
    "evaluation_report": "macro",
    "model_card": "rxvision-classifier",
}


@pytest.fixture(scope="module")
def trained(isolated_home, tiny_config):
    """One tiny training run (MLflow tracking on, as on the local stack) in this module's
    own state folder."""
    from pipelines.training import run_training

    return isolated_home, run_training(tiny_config())


def _levels(lines):
    return [(line.level, line.message) for line in lines]


def test_step_logs_store_progress_and_mlflow_output_without_error_lines(trained) -> None:
    from tests.support.step_logs import step_log_lines

    _, run = trained
    lines = step_log_lines(run)
    assert set(lines) >= {"load_data", "train_model", "evaluate_model", "register_model"}
    errors = [(step, e.message) for step, es in lines.items() for e in es if e.level == "ERROR"]
    assert not errors, errors  # a run that succeeded has nothing to report as an error
    train = lines["train_model"]
    epochs = [e for e in train if re.match(r"epoch \d+/\d+ ", e.message)]
    assert len(epochs) == 2 and all(e.level == "INFO" for e in epochs), _levels(train)
    redraws = [e for es in lines.values() for e in es if "it/s]" in e.message]
    assert not redraws, redraws  # progress bars stay on the terminal


def test_a_genuine_error_is_still_stored_as_error_and_information_as_info(isolated_home) -> None:
    import mlflow  # noqa: F401
    from mlflow.utils.logging_utils import _configure_mlflow_loggers  # as on a fresh import

    from tests.support import noisy_pipeline as noisy
    from tests.support.step_logs import step_log_lines

    _configure_mlflow_loggers("mlflow")  # MLflow's own stderr handler, as after `import mlflow`
    quiet = noisy.noisy_pipeline(fail=False)
    with pytest.raises(Exception, match="noisy_step"):
        noisy.noisy_pipeline(fail=True)
    from zenml.client import Client

    failed = (
        Client()
        .list_pipeline_runs(pipeline_id=quiet.pipeline.id, sort_by="desc:created", size=1)
        .items[0]
    )
    assert failed.id != quiet.id

    ok = step_log_lines(quiet)["noisy_step"]
    assert ("INFO", "working on it") in _levels(ok)
    assert ("INFO", noisy.MLFLOW_LINE) in _levels(ok), _levels(ok)
    assert not [e for e in ok if e.level == "ERROR"], _levels(ok)
    assert not [e for e in ok if "noisy progress" in e.message], _levels(ok)

    bad = step_log_lines(failed)["noisy_step"]
    assert ("ERROR", noisy.GENUINE_ERROR) in _levels(bad), _levels(bad)
    raised = [e for e in bad if e.level == "ERROR" and e.message != noisy.GENUINE_ERROR]
    assert raised, _levels(bad)  # ZenML's record of the step's exception


def _stop_server(home, env: dict[str, str], port: int) -> None:
    """`zenml logout --local`, then end any daemon of this state folder still serving."""
    zenml_cli = Path(sys.executable).with_name("zenml")
    subprocess.run(
        [str(zenml_cli), "logout", "--local"], env=env, cwd=ROOT, timeout=120, check=False
    )
    for pid_file in Path(home.zenml_config).rglob("*.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    for _ in range(30):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(1)


@pytest.fixture(scope="module")
def dashboard(trained):
    """The local ZenML server on a free port, started as a user does: python run.py
    --dashboard. Stopped in teardown whatever happened."""
    home, _ = trained
    port = free_port()
    env = {**os.environ, "RXVISION_HOME": str(home.home), "ZENML_AUTO_OPEN_DASHBOARD": "false"}
    url = f"http://127.0.0.1:{port}"
    try:
        started = run_py(["--dashboard", "--dashboard-port", str(port)], home.home, 300, env)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        assert f"dashboard: {url}" in started.stdout
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the dashboard server did not answer /health"
            time.sleep(1)
        yield url
    finally:
        _stop_server(home, env, port)


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    assert path.stat().st_size > 5000
    return path


def _sign_up(page, folder: Path) -> None:
    """The local dashboard's one-time form: account details, role and infrastructure, the
    community step (skipped), done."""
    page.wait_for_selector("input[name=fullName]")
    assert "/survey" in page.url
    _shot(page, folder, "1-sign-up-form")
    page.fill("input[name=fullName]", "RxVision Tester")
    page.fill("input[name=email]", "tester@example.com")
    page.get_by_role("button", name="Continue").click()
    page.locator("input[name=primaryRole][value=ml_engineer]").check(force=True)
    page.locator("input[name=infraType][value=local]").check(force=True)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Skip this step").click()
    page.get_by_text("Go to Dashboard").wait_for()


def _open_graph(page, run_page: str) -> None:
    page.goto(run_page, wait_until="domcontentloaded")
    page.locator(".react-flow__node").first.wait_for()
    # the graph draws only the nodes in view: fit all of it
    page.locator("button[title*='fit' i], button[aria-label*='fit' i]").first.click()


def _open_report(page, artifact: str):
    """Click the artifact's node in the step graph, open its Visualization tab and load the
    preview; returns the preview's frame element."""
    node = page.locator(".react-flow__node").filter(has=page.get_by_text(artifact, exact=True))
    node.first.click()
    page.get_by_role("tab", name="Visualization").last.click()
    page.get_by_role("button", name="Load Preview").click()
    frame = page.locator("iframe").first
    frame.wait_for()
    return frame


def test_dashboard_shows_signup_runs_graph_and_reports_without_scripts(
    trained, dashboard, tmp_path
) -> None:
    from zenml.client import Client

    _, run = trained
    project = Client().active_project.name
    steps = list(Client().get_pipeline_run(run.id).steps)
    with sync_playwright() as p:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        browser = launch(p)
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 900}, reduced_motion="reduce"
            )
            context.set_default_timeout(BROWSER_TIMEOUT_MS)
            # offline: the dashboard's calls to outside hosts (avatars, logos) fail at once
            context.route(
                "**/*",
                lambda route: (
                    route.continue_() if route.request.url.startswith(dashboard) else route.abort()
                ),
            )
            page = context.new_page()
            page.goto(dashboard, wait_until="domcontentloaded")
            _sign_up(page, tmp_path)

            page.goto(f"{dashboard}/projects/{project}/runs", wait_until="domcontentloaded")
            page.get_by_text(run.name).first.wait_for()
            assert page.get_by_text("rxvision_training").count() >= 1
            _shot(page, tmp_path, "2-runs")

            run_page = f"{dashboard}/projects/{project}/runs/{run.id}"
            _open_graph(page, run_page)
            names = " ".join(page.locator(".react-flow__node").all_inner_texts())
            missing = [s for s in steps if s not in names]
            assert not missing, f"steps not in the graph: {missing}"
            _shot(page, tmp_path, "3-step-graph")

            for i, (artifact, text) in enumerate(REPORTS.items(), start=4):
                frame = _open_report(page, artifact)
                assert frame.get_attribute("sandbox") == ""  # the dashboard runs no scripts
                content = frame.content_frame
                body = content.locator("body").inner_text()
                assert text in body.lower(), f"{artifact} shows: {body[:300]!r}"
                assert len(body.split()) > 20, f"{artifact} is (almost) blank: {body!r}"
                assert content.locator("script").count() == 0, artifact
                assert frame.bounding_box()["height"] > 100
                _shot(page, tmp_path, f"{i}-{artifact}")
                page.keyboard.press("Escape")  # close the artifact's panel
                try:
                    page.locator("iframe").first.wait_for(state="detached", timeout=30_000)
                except PlaywrightTimeout:
                    _open_graph(page, run_page)

            # a step's stored log, as its Logs tab shows it: the per-epoch lines
            page.locator(".react-flow__node").filter(
                has=page.get_by_text("train_model", exact=True)
            ).first.click()
            page.get_by_role("tab", name="Logs").last.click()
            page.get_by_text(re.compile(r"epoch 2/2 +train_loss")).first.wait_for()
            _shot(page, tmp_path, f"{len(REPORTS) + 4}-train_model-logs")
        finally:
            browser.close()
