"""MLflow logging. One run per evaluation; the store is shared by every DVC experiment.

`dvc exp run --queue/--temp` runs stages in a temporary copy of the repository, so a relative
store such as `sqlite:///mlflow.db` is resolved against DVC_ROOT, which DVC sets to the root of the
real repository for every stage it runs (and for queued experiments too). Artifacts go to
`mlartifacts/` beside the store for the same reason.

Queued experiments (`dvc queue start -j 2`) evaluate in parallel processes against the one SQLite
file. MLflow creates and migrates a missing store's schema when it first opens it, outside any
transaction, so two first-time evals would race on it; every write therefore happens under an
inter-process lock on `<db>.lock` (see `store_lock`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SQLITE = "sqlite:///"
# Seconds a SQLite connection waits for another writer before "database is locked". MLflow sets
# `PRAGMA busy_timeout = 20000` on its sessions, but engine creation and the schema migrations run on
# plain connections with Python's default of 5 s; `?timeout=` reaches sqlite3.connect through SQLAlchemy.
SQLITE_TIMEOUT_S = 60


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


def prepare_store(uri: str) -> str:
    """Create and migrate the store at uri (resolved as in log_run) under its lock; returns the URI used."""
    import mlflow

    resolved = with_busy_timeout(resolve_uri(uri))
    with store_lock(uri):
        mlflow.MlflowClient(resolved).search_experiments(max_results=1)  # opening the store migrates it
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
    try:
        return client.create_experiment(name, artifact_location=(project_root() / "mlartifacts").as_uri())
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
    """Record one run; returns its id. Safe to call from parallel processes on one SQLite store."""
    import mlflow

    with store_lock(uri):
        mlflow.set_tracking_uri(with_busy_timeout(resolve_uri(uri)))
        experiment_id = _experiment_id(mlflow.MlflowClient(), experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            for path in artifacts:
                mlflow.log_artifact(str(path))
            return run.info.run_id
