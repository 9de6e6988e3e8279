"""MLflow logging. One run per evaluation; the store is shared by every DVC experiment.

`dvc exp run --queue/--temp` runs stages in a temporary copy of the repository, so a relative
store such as `sqlite:///mlflow.db` is resolved against DVC_ROOT, which DVC sets to the root of the
real repository for every stage it runs (and for queued experiments too). Artifacts go to
`mlartifacts/` beside the store for the same reason.

Queued experiments (`dvc queue start -j 2`) evaluate in parallel processes against the one SQLite
file. MLflow creates and migrates a missing store's schema when it first opens it, outside any
transaction, so two first-time evals would race on it; every write therefore happens under an
inter-process lock on `<db>.lock` (see `store_lock`).

A shared tracking server (`tracking.uri: http://host:port`, README "A shared tracking server") needs
none of that: the server owns its database, migrates it and serialises writers, and keeps the artifacts
in its own store. The client's user and password come from MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD, which MLflow reads itself; they are never part of the URI, because the URI is a
param and lands in dvc.lock and in every run's MLflow params. A server that is down or refuses the
credentials is one line (`TrackingError`), never a traceback or a four-minute retry loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from varireal.errors import ParamError, StageError, first_line

SQLITE = "sqlite:///"
# Seconds a SQLite connection waits for another writer before "database is locked". MLflow sets
# `PRAGMA busy_timeout = 20000` on its sessions, but engine creation and the schema migrations run on
# plain connections with Python's default of 5 s; `?timeout=` reaches sqlite3.connect through SQLAlchemy.
SQLITE_TIMEOUT_S = 60
SERVER_SCHEMES = ("http://", "https://")
# MLflow retries a failed HTTP request 7 times with exponential backoff: about four minutes before a
# down server becomes an error. An eval has its outputs on disk by then and `--log-only` logs them later,
# so it gives up after this many retries (a few seconds) unless the user set MLFLOW_HTTP_REQUEST_MAX_RETRIES.
SERVER_RETRIES = 2
CREDENTIAL_VARS = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


class TrackingError(StageError):
    """The tracking server could not be reached or refused us; the message is one line without secrets."""


def is_server(uri: str) -> bool:
    return uri.startswith(SERVER_SCHEMES)


def redacted(uri: str) -> str:
    """The URI without a user or password, for messages."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"***@{host}" + (f":{parts.port}" if parts.port else "")))


def check_uri(uri: str) -> None:
    """Refuse credentials inside a server URI: tracking.uri is recorded in dvc.lock and in MLflow params."""
    if is_server(uri):
        parts = urlsplit(uri)
        if parts.username is not None or parts.password is not None:
            raise ParamError("tracking.uri", redacted(uri),
                             f"a server URI without user or password (it is recorded in dvc.lock and in every "
                             f"run's params); set {CREDENTIAL_VARS} instead")


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT", ".")).resolve()


def resolve_uri(uri: str) -> str:
    """Make a relative SQLite or file store absolute, at the repository root."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        return SQLITE + str(project_root() / uri[len(SQLITE):])
    if "://" not in uri:
        return str(project_root() / uri)
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (query stripped), else None."""
    if not uri.startswith(SQLITE) or uri[len(SQLITE):].split("?")[0] in ("", ":memory:"):
        return None
    return Path(uri[len(SQLITE):].split("?")[0])


def with_busy_timeout(uri: str) -> str:
    """A SQLite URI with a connection timeout, unless the user already gave query options."""
    if sqlite_path(uri) is None or "?" in uri:
        return uri
    return f"{uri}?timeout={SQLITE_TIMEOUT_S}"


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock on `<db>.lock` (a no-op for stores that are servers).

    Held for the whole of a log, not only the store's set-up: a log is one run and a few small
    artifacts, so writers queue for well under a second each, and no two of our writers ever meet
    inside SQLite. Readers (the MLflow UI, `varireal report`) still can; the busy timeout covers them.
    """
    from filelock import FileLock

    path = sqlite_path(resolve_uri(uri))
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        yield


def _reason(err: BaseException, uri: str) -> str:
    """What went wrong with the server at uri, and what to do, in a few words (MLflow's own messages
    carry a response body and a retry history)."""
    code = getattr(err, "error_code", "")
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if code == "UNAUTHENTICATED":
        who = f"user {user!r}" if user else "no user (MLFLOW_TRACKING_USERNAME is not set)"
        return f"{uri} refused the credentials of {who}: set {CREDENTIAL_VARS} to an account of that server"
    if code == "PERMISSION_DENIED":
        return f"{uri} denied user {user!r} this write: ask the server's admin for EDIT permission on the experiment"
    text = first_line(err)
    if any(sign in text for sign in ("NewConnectionError", "Connection refused", "Failed to establish")):
        return f"{uri} is unreachable (no server answers there): start it or fix tracking.uri"
    return f"{uri} failed: {text[:300]}"


@contextlib.contextmanager
def server_errors(uri: str) -> Iterator[None]:
    """For a server URI: bounded retries, and any failure to talk to it as one-line TrackingError."""
    if not is_server(uri):
        yield
        return
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    retries_set = "MLFLOW_HTTP_REQUEST_MAX_RETRIES" in os.environ
    if not retries_set:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(SERVER_RETRIES)
    # urllib3 logs a warning per retry; the failure, if it comes, is our one line.
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        yield
    except (MlflowException, RequestException) as err:
        raise TrackingError(_reason(err, uri)) from None
    finally:
        pool_log.setLevel(level)
        if not retries_set:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)


def prepare_store(uri: str) -> str:
    """Create and migrate the store at uri (resolved as in log_run) under its lock; returns the URI used.
    A server migrates its own database: for one, only check that it answers and takes our credentials."""
    import mlflow

    check_uri(uri)
    resolved = with_busy_timeout(resolve_uri(uri))
    with store_lock(uri), server_errors(uri):
        mlflow.MlflowClient(resolved).search_experiments(max_results=1)  # opening a local store migrates it
    return resolved


def git_commit() -> str:
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return os.environ["DVC_EXP_BASELINE_REV"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dvc_out_hash(stage: str, out_path: str, lockfile: str | Path = "dvc.lock") -> str:
    """The hash DVC recorded for a stage's output (the .dir md5 for a folder), or 'unrecorded'."""
    try:
        lock = yaml.safe_load(Path(lockfile).read_text()) or {}
        for out in lock["stages"][stage]["outs"]:
            if out["path"] == out_path:
                return out["md5"]
    except (OSError, KeyError, TypeError):
        pass
    return "unrecorded"


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # A local store's artifacts go beside it at the repository root; a server's to its own artifact store
    # (an artifact_location here would make every client write to its own disk).
    location = None if is_server(client.tracking_uri) else (project_root() / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another experiment created it between our two calls
        return client.get_experiment_by_name(name).experiment_id


def log_run(
    uri: str,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: list[Path],
) -> str:
    """Record one run; returns its id. Safe to call from parallel processes on one SQLite store.
    A server that cannot be reached or refuses us raises TrackingError."""
    import mlflow

    check_uri(uri)
    with store_lock(uri), server_errors(uri):
        mlflow.set_tracking_uri(with_busy_timeout(resolve_uri(uri)))
        experiment_id = _experiment_id(mlflow.MlflowClient(), experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            for path in artifacts:
                mlflow.log_artifact(str(path))
            return run.info.run_id
