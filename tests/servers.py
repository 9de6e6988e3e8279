"""A real shared tracking server for the tests: PostgreSQL and `mlflow server --app-name basic-auth`, started
by the commands of README "A shared tracking server" as written (only SERVER and the two ports differ).

The README's setup blocks run in bash: the PostgreSQL block as the current user, or as the `postgres`
user when the tests run as root (`initdb` and `postgres` refuse root); the MLflow and the users blocks as
the current user, their `read -rsp` prompts answered on stdin as a person would type them. Without
PostgreSQL binaries the fixture skips, unless VARIREAL_REQUIRE_SERVICES=1 (CI) makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO
from launching import free_port

SECTION = "### A shared tracking server"
SETTINGS = "export SERVER=~/mlflow-server PG_PORT=5432 PORT=5000"
README_PORT = "127.0.0.1:5000"
USER = "alice"
START_TIMEOUT_S = 300  # the first start creates two schemas in PostgreSQL: about a minute on 2 busy cores


@dataclass
class TrackingServer:
    uri: str
    root: Path  # README's $SERVER
    port: int
    admin_password: str
    user: str
    password: str

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def settings(self) -> str:
        """README's settings line with this server's folder and ports."""
        return f"export SERVER={self.root} PG_PORT={self.pg_port} PORT={self.port}\n"

    pg_port: int = 0


def readme_blocks() -> list[str]:
    """The ```bash blocks of README's shared-server section, in order."""
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n#", start + len(SECTION))
    return re.findall(r"```bash\n(.*?)```", text[start:end if end != -1 else None], flags=re.S)


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("VARIREAL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (VARIREAL_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's initdb/pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda path: int(re.search(r"/(\d+)/bin/", path).group(1)))
    return Path(candidates[-1]).parent if candidates else None


def service_env(bindir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_TRACKING_", "DVC_", "PG")) and k != "MLFLOW_AUTH_CONFIG_PATH"}
    env["PATH"] = os.pathsep.join([str(bindir), str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def bash(script: str, env: dict[str, str], log: Path, stdin: str = "", as_postgres: bool = False,
         **popen) -> subprocess.CompletedProcess:
    command = ["bash", "-euo", "pipefail", "-c", script]
    if as_postgres:  # runuser keeps the environment it is given; HOME for initdb's and libpq's defaults
        command = ["runuser", "-u", "postgres", "--", "env", f"PATH={env['PATH']}", "HOME=/var/lib/postgresql",
                   *command]
    with log.open("a") as out:
        return subprocess.run(command, env=env, input=stdin, text=True, stdout=out, stderr=subprocess.STDOUT,
                              timeout=START_TIMEOUT_S, **popen)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def tracking_server():
    """A running server: PostgreSQL in a temp folder, MLflow with basic auth and a user `alice`."""
    bindir = postgres_bin()
    require(bindir is not None, "no PostgreSQL binaries: no initdb on PATH nor in /usr/lib/postgresql/*/bin "
                                "(apt-get install postgresql)")
    as_postgres = os.geteuid() == 0
    if as_postgres:
        try:
            postgres_user = pwd.getpwnam("postgres")
        except KeyError:
            postgres_user = None
        require(postgres_user is not None and shutil.which("runuser") is not None,
                "running as root, and PostgreSQL refuses root: no `postgres` user (or no runuser) to run it as")
    settings, pg_block, mlflow_block, users_block = readme_blocks()[:4]
    assert settings.strip() == SETTINGS, settings

    # Not under pytest's tmp_path: the postgres user must be able to enter it.
    root = Path(tempfile.mkdtemp(prefix="varireal-mlflow-server-"))
    log = Path(tempfile.mkdtemp(prefix="varireal-mlflow-logs-")) / "setup.log"
    if as_postgres:
        os.chown(root, postgres_user.pw_uid, postgres_user.pw_gid)
    server = TrackingServer(uri="", root=root, port=free_port(), admin_password="adm-" + secrets.token_hex(10),
                            user=USER, password="pw-" + secrets.token_hex(10))
    server.pg_port = free_port()
    server.uri = f"http://127.0.0.1:{server.port}"
    env = service_env(bindir)
    mlflow_session = None
    try:
        done = bash(server.settings() + pg_block, env, log, as_postgres=as_postgres)
        assert done.returncode == 0, f"README's PostgreSQL block failed:\n{log.read_text()}"
        # Its own session: `nohup mlflow server ... &` stays in this process group after bash exits.
        done = bash(server.settings() + mlflow_block, env, log, stdin=server.admin_password + "\n",
                    start_new_session=True)
        assert done.returncode == 0, f"README's MLflow block failed:\n{log.read_text()}"
        mlflow_pid = int((root / "mlflow.pid").read_text())
        mlflow_session = os.getpgid(mlflow_pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(server.uri):
            if not _alive(mlflow_pid) or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not come up:\n{(root / 'mlflow.log').read_text()[-4000:]}")
            time.sleep(1)
        done = bash(server.settings() + users_block, env, log,
                    stdin=f"{server.admin_password}\n{server.password}\n")
        assert done.returncode == 0, f"README's users block failed:\n{log.read_text()}"
        yield server
    finally:
        # README's stop command, then anything of the server's process group that outlived it.
        stopped = True
        if mlflow_session is not None:
            bash(server.settings() + "kill $(cat $SERVER/mlflow.pid)", env, log)
            # uvicorn's workers and MLflow's job runner must go with it; the job runner notices within a
            # second that the server is gone and then shuts down, so the group may take a few seconds.
            stopped = _wait_group_gone(mlflow_session)  # the server's own process included
            if not stopped:
                os.killpg(mlflow_session, signal.SIGKILL)
        if (root / "pg" / "postmaster.pid").exists():
            bash(server.settings() + "pg_ctl -D $SERVER/pg stop", env, log, as_postgres=as_postgres)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(log.parent, ignore_errors=True)
        assert stopped, "README's `kill $(cat $SERVER/mlflow.pid)` left processes of the server running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_group_gone(pgid: int, timeout: float = 30) -> bool:
    """Whether every process of group pgid ended within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
