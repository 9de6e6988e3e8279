"""MLflow logging. One run per evaluation; the store is shared by every DVC experiment.

`dvc exp run --queue/--temp` runs stages in a temporary copy of the repository, so a relative
store such as `sqlite:///mlflow.db` is resolved against DVC_ROOT, which DVC sets to the root of the
real repository for every stage it runs (and for queued experiments too). Artifacts go to
`mlartifacts/` beside the store for the same reason.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

SQLITE = "sqlite:///"


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT", ".")).resolve()


def resolve_uri(uri: str) -> str:
    """Make a relative SQLite or file store absolute, at the repository root."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        return SQLITE + str(project_root() / uri[len(SQLITE):])
    if "://" not in uri:
        return str(project_root() / uri)
    return uri


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
    """Record one run; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(resolve_uri(uri))
    experiment_id = _experiment_id(mlflow.MlflowClient(), experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        for path in artifacts:
            mlflow.log_artifact(str(path))
        return run.info.run_id
