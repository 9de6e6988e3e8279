"""Parallel evals against one SQLite store that does not exist yet: every run lands complete."""

import multiprocessing
import os
from pathlib import Path

import pytest

from typer.testing import CliRunner

WRITERS = 4


def _log_one(root: str, index: int, barrier, errors) -> None:
    """One eval's log_run in its own process; DVC_ROOT as a queued experiment sees it."""
    from varireal_pipeline import tracking  # before chdir: spawn gave this process the parent's sys.path

    os.environ["DVC_ROOT"] = root
    os.chdir(root)
    try:
        artifact = Path(root, f"artifact-{index}.txt")
        artifact.write_text(f"artifact of writer {index}\n")
        barrier.wait()  # all four open the missing store at the same moment
        tracking.log_run("sqlite:///store/mlflow.db", "varireal", f"writer-{index}", {"index": index},
                         {"top1": index / 10, "loss": 1.0 + index}, {"writer": str(index)}, [artifact])
    except BaseException as err:  # reported to the test, which fails with it
        errors.put(f"writer {index}: {err!r}")
        raise


@pytest.mark.slow  # tens of seconds: make test's 6-minute budget; CI runs it (make test-slow)
def test_parallel_log_runs_create_the_store_once_and_all_land_complete(tmp_path, monkeypatch):
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(WRITERS), context.Queue()
    assert not (tmp_path / "store").exists()
    workers = [context.Process(target=_log_one, args=(str(tmp_path), i, barrier, errors)) for i in range(WRITERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, failures
    assert [w.exitcode for w in workers] == [0] * WRITERS

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("varireal").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"writer-{i}" for i in range(WRITERS)]
    for run in runs:
        index = int(run.data.tags["writer"])
        assert run.info.status == "FINISHED"
        assert run.data.params == {"index": str(index)}
        assert run.data.metrics == {"top1": index / 10, "loss": 1.0 + index}
        artifact = Path(run.info.artifact_uri.removeprefix("file://"), f"artifact-{index}.txt")
        assert artifact.read_text() == f"artifact of writer {index}\n"
        assert artifact.is_relative_to(tmp_path / "mlartifacts")


def test_store_command_creates_and_migrates_the_store(project):
    from varireal_pipeline.cli import app

    project(tracking={"uri": "sqlite:///runs/mlflow.db"})
    result = CliRunner().invoke(app, ["store"])
    assert result.exit_code == 0, result.output
    database = Path("runs/mlflow.db").resolve()
    assert f"sqlite:///{database}" in result.output

    import sqlite3

    from mlflow.store.db.utils import _get_latest_schema_revision

    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("select version_num from alembic_version").fetchone()
    assert revision == _get_latest_schema_revision()  # migrated to MLflow's newest schema
