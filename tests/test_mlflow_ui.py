"""The MLflow UI in a real browser: runs of the small pipeline, their top1 and the contact sheet.

Headless Chromium (Debian's package; installed here when missing and we are root) renders the UI
served by `mlflow server` on loopback. `--dump-dom` gives the DOM after the React app has fetched
its data, `--screenshot` the picture; both wait out `--virtual-time-budget`, which stops counting
while requests are pending, so a slow server only makes the checks slower, not wrong.
Screenshots stay in the test's tmp dir; `pytest -m slow -rP tests/test_mlflow_ui.py` prints their paths.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from test_stages import STAGES, mlflow_runs, run

pytestmark = pytest.mark.slow

WINDOW = (1600, 1200)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium executable; installs Debian's package when it is missing."""
    if found := shutil.which("chromium"):
        return found
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not on PATH and there is no apt-get to install it with")
    if os.geteuid() != 0:
        pytest.skip("chromium is not on PATH; installing it needs root: apt-get install chromium")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode != 0:  # stale package lists: refresh them once
        subprocess.run(["apt-get", "update"], capture_output=True, env=env)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode != 0 or not (found := shutil.which("chromium")):
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"chromium could not be installed with apt-get ({reason})")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> bytes:
    """GET without any proxy the environment may name: everything here is loopback."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read()


@contextlib.contextmanager
def mlflow_server(store: Path, log: Path):
    """`mlflow server` on a free loopback port; yields its base URL once it answers, always stops it."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # The UI needs no background jobs (GenAI judges); without them no job consumers start.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        # A session of its own: the server's workers are stopped with it, as one process group.
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(f"{url}/health").strip() == b"OK":
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer on {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


class Browser:
    def __init__(self, executable: str, profile: Path):
        self.command = [executable, "--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                        "--no-proxy-server", "--hide-scrollbars", f"--user-data-dir={profile}",
                        f"--window-size={WINDOW[0]},{WINDOW[1]}"]
        if os.geteuid() == 0:
            self.command.append("--no-sandbox")  # Chromium's sandbox refuses to run as root

    def _run(self, url: str, budget_ms: int, *flags: str) -> str:
        result = subprocess.run([*self.command, f"--virtual-time-budget={budget_ms}", *flags, url],
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def dom(self, url: str, *expected: str) -> str:
        """The rendered DOM once every expected text is in it (longer waits on each try)."""
        for budget_ms in (5_000, 15_000, 40_000):
            html = self._run(url, budget_ms, "--dump-dom")
            if all(text in html for text in expected):
                return html
        missing = [text for text in expected if text not in html]
        pytest.fail(f"{url} never showed {missing}; last DOM ends with:\n{html[-2000:]}")

    def screenshot(self, url: str, path: Path, budget_ms: int = 15_000) -> Path:
        self._run(url, budget_ms, f"--screenshot={path}")
        return path


def test_mlflow_ui_shows_runs_top1_and_the_contact_sheet(project, chromium, tmp_path, monkeypatch):
    # Two runs, told apart by their names (the DVC experiment name names the MLflow run).
    names = {0.0: "ui-feasible", 1.0: "ui-infeasible"}
    for ratio, name in names.items():
        project(mix={"infeasible_ratio": ratio})
        monkeypatch.setenv("DVC_EXP_NAME", name)
        run(*(STAGES if ratio == 0.0 else ["mix", "train", "eval"]))
    runs = {r.info.run_name: r for r in mlflow_runs()}
    assert set(runs) == set(names.values())
    experiment_id = runs["ui-feasible"].info.experiment_id
    sheet_run = runs["ui-infeasible"].info.run_id

    browser = Browser(chromium, tmp_path / "chromium-profile")
    with mlflow_server(tmp_path / "mlflow.db", tmp_path / "mlflow-server.log") as url:
        # The runs' chart view: a "top1" chart whose bars are labelled with each run's value.
        experiment_page = f"{url}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART"
        top1 = [f">{r.data.metrics['top1']:.2f}<" for r in runs.values()]
        browser.dom(experiment_page, *names.values(), ">top1<", *top1)

        # The run's artifact view with the sheet selected: the UI fetches it and shows it as an image.
        artifact_page = f"{url}/#/experiments/{experiment_id}/runs/{sheet_run}/artifactPath/contact_sheet.png"
        html = browser.dom(artifact_page, "ui-infeasible", 'alt="contact_sheet.png"')
        assert re.search(r'<img alt="contact_sheet.png" src="blob:', html)
        # What it fetched is the sheet eval wrote.
        assert get(f"{url}/get-artifact?path=contact_sheet.png&run_uuid={sheet_run}") == \
            Path("metrics/contact_sheet.png").read_bytes()

        shots = [browser.screenshot(experiment_page, tmp_path / "mlflow-experiment.png"),
                 browser.screenshot(artifact_page, tmp_path / "mlflow-contact-sheet.png")]
    for shot in shots:
        with Image.open(shot) as image:
            assert image.format == "PNG" and image.size == WINDOW
            low, high = image.convert("L").getextrema()
            assert high - low > 100  # a rendered page, not a blank one
        print(f"screenshot: {shot}")
