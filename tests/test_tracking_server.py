"""tracking.uri at a shared MLflow server (README "A shared tracking server"): a real PostgreSQL and
`mlflow server --app-name basic-auth` (tests/servers.py), the small pipeline under DVC logging to it, the
report reading it back, and what happens when the server refuses the password or is down.

The fast tests need no server: a URI with credentials, a closed port, and `eval --log-only` logging the
identical run that eval logs, on SQLite stores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO, merged, write_small_project
from launching import free_port
from servers import README_PORT, readme_blocks, tracking_server  # noqa: F401 (a fixture)

from varireal_pipeline import eval_runs


def closed_port_uri() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens on a port the OS just handed out and took back


def errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# -- fast: no server ----------------------------------------------------------------------------------


def test_credentials_in_the_uri_are_refused_without_echoing_them(project):
    from varireal_pipeline.cli import app

    project(tracking={"uri": "http://alice:s3cret-pw@127.0.0.1:9"})
    for command in (["store"], ["eval"], ["eval", "--log-only"], ["report"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "s3cret-pw" not in result.output and "alice" not in result.output
        (line,) = errors(result.output)
        assert "tracking.uri" in line and "MLFLOW_TRACKING_USERNAME" in line and "http://***@127.0.0.1:9" in line
    assert not Path("metrics").exists()  # refused before any work


def test_store_and_report_with_no_server_say_so_in_one_line_within_seconds(project):
    from varireal_pipeline.cli import app

    uri = closed_port_uri()
    project(tracking={"uri": uri})
    for command in (["store"], ["report"]):
        start = time.monotonic()
        result = CliRunner().invoke(app, command)
        assert time.monotonic() - start < 30  # not MLflow's four minutes of retries
        assert result.exit_code == 1, result.output
        (line,) = errors(result.output)
        assert f"{uri} is unreachable" in line and "Traceback" not in result.output
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # set only while talking to the server


def _hand_made_run() -> eval_runs.EvalRun:
    return eval_runs.EvalRun(
        params={"mix.infeasible_ratio": 0.5, "edit.attributes": ("color", "texture"), "train.seed": 3,
                "tracking.uri": "sqlite:///a.db"},
        condition="mixed", attribute="color", dataset="world", top1=2 / 3, top5=1.0,
        per_class={"cat": 0.5, "dog": 1.0, "fox": None},
        predictions=(eval_runs.Prediction("a.png", "cat", "cat"), eval_runs.Prediction("b.png", "cat", "dog"),
                     eval_runs.Prediction("c.png", "dog", "dog")),
        experiment="exp-1", git_commit="abc123", synthetic_md5="s.dir", checkpoint_md5="c.dir")


def test_log_only_logs_the_run_eval_logs(project):
    """eval's own record() to one experiment, `eval --log-only` of its outputs to another: the same run.
    (One store for both: creating a SQLite store costs seconds.)"""
    import mlflow

    from varireal_pipeline.cli import app

    metrics = Path("metrics")
    metrics.mkdir()
    (metrics / "contact_sheet.png").write_bytes(b"not really a png")
    run = _hand_made_run()
    eval_runs.record(run, metrics, "sqlite:///a.db", "by-eval", more_artifacts=(metrics / "contact_sheet.png",))
    project(tracking={"uri": "sqlite:///a.db", "experiment": "by-log-only"})
    result = CliRunner().invoke(app, ["eval", "--log-only"])
    assert result.exit_code == 0, result.output
    assert "eval: logged metrics/ (top1=0.6667 condition=mixed) as mlflow run" in result.output

    logged = []
    client = mlflow.MlflowClient(f"sqlite:///{Path('a.db').resolve()}")
    for experiment in ("by-eval", "by-log-only"):
        (found,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        artifacts = sorted(item.path for item in client.list_artifacts(found.info.run_id))
        tags = {k: v for k, v in found.data.tags.items() if not k.startswith("mlflow.") or "git" in k}
        logged.append((found.info.run_name, found.data.params, found.data.metrics, tags, artifacts,
                       found.info.status))
    assert logged[0] == logged[1]
    assert logged[0][4] == ["contact_sheet.png", "eval.json", "predictions.csv"]
    assert logged[0][1]["edit.attributes"] == "('color', 'texture')"  # str() of the tuple, not of a JSON list

    # Outputs changed after the record (an eval that stopped part-way): refused, nothing logged.
    summary = json.loads((metrics / "eval.json").read_text())
    (metrics / "eval.json").write_text(json.dumps({**summary, "top1": 0.1}))
    result = CliRunner().invoke(app, ["eval", "--log-only"])
    assert result.exit_code == 1
    (line,) = errors(result.output)
    assert "no longer match" in line and "varireal eval" in line


def test_log_only_without_an_eval_says_run_eval_first(project):
    from varireal_pipeline.cli import app

    result = CliRunner().invoke(app, ["eval", "--log-only"])
    assert result.exit_code == 1
    (line,) = errors(result.output)
    assert "eval_run.json" in line and "run `varireal eval` first" in line


# -- slow: the small pipeline under DVC against the real server -----------------------------------------


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    """The small pipeline run once by `dvc repro` (into its local SQLite store) in a fresh git + DVC repo."""
    root = tmp_path_factory.mktemp("server-project")
    write_small_project(root)
    (root / "metrics").mkdir()
    (root / "metrics" / ".gitignore").write_text((REPO / "metrics" / ".gitignore").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_TRACKING_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the installed `varireal` and `dvc`
    env |= {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "project"], ["dvc", "repro"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "first run"]):
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return root, env


def sh(script: str, root: Path, env: dict, stdin: str = "", **extra_env) -> subprocess.CompletedProcess:
    """bash in the project, output kept apart (stdout, stderr) for the checks; through files, not pipes,
    since DVC may leave daemons holding a pipe."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=root, env={**env, **extra_env},
                              input=stdin, text=True, stdout=out, stderr=err, timeout=900)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())


def server_runs(server, monkeypatch) -> list:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    client = mlflow.MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("varireal")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def eval_runs_of(found: list) -> list:
    return [run for run in found if "condition" in run.data.tags]


def assert_no_secret(server, root: Path, outputs: list[str]) -> None:
    """No password of the server in any file of the project (git, DVC's cache included) nor any output."""
    for secret in (server.password, server.admin_password):
        assert all(secret not in text for text in outputs)
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), path


def researcher_block(server) -> str:
    """README's block for a researcher, at this server's port."""
    return readme_blocks()[4].replace(README_PORT, f"127.0.0.1:{server.port}")


@pytest.mark.slow
def test_dvc_exp_run_logs_to_the_server_and_report_reads_it_back(dvc_project, tracking_server, monkeypatch):
    root, env = dvc_project
    server = tracking_server
    done = sh(researcher_block(server), root, env, stdin=server.password + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.findall(r"Running stage '(\w+)'", done.stdout) == ["eval"]  # tracking.* is a param of eval only
    assert f"store: {server.uri} is a tracking server: it answers and accepts the credentials" in done.stdout
    assert re.search(r"report: 1 runs, ", done.stdout), done.stdout
    assert (root / "reports" / "report.md").is_file()
    assert yaml.safe_load((root / "params.yaml").read_text())["tracking"]["uri"] == server.uri

    found = server_runs(server, monkeypatch)
    (logged,) = eval_runs_of(found)
    assert {run.info.run_name for run in found} == {logged.info.run_name, "report"}
    summary = json.loads((root / "metrics" / "eval.json").read_text())
    assert logged.data.metrics["top1"] == pytest.approx(summary["top1"])
    assert logged.data.params["tracking.uri"] == server.uri
    # Artifacts went through the server into its artifact root, not to the project's disk.
    assert logged.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = server.artifacts / logged.info.experiment_id / logged.info.run_id / "artifacts"
    assert sorted(p.name for p in stored.iterdir()) == ["contact_sheet.png", "eval.json", "predictions.csv"]
    assert (stored / "eval.json").read_bytes() == (root / "metrics" / "eval.json").read_bytes()
    assert not list(root.glob(f"mlartifacts/*/{logged.info.run_id}"))
    for run in found:
        assert all(server.password not in v for v in [*run.data.params.values(), *run.data.tags.values()])
    assert_no_secret(server, root, [done.stdout, done.stderr])


@pytest.mark.slow
def test_wrong_password_fails_eval_in_one_line_then_log_only_logs_it(dvc_project, tracking_server, monkeypatch):
    root, env = dvc_project
    server = tracking_server
    sh(f"dvc exp run -S tracking.uri={server.uri}", root, env, MLFLOW_TRACKING_USERNAME=server.user,
       MLFLOW_TRACKING_PASSWORD=server.password)  # the state the previous test leaves, when run alone
    before = len(eval_runs_of(server_runs(server, monkeypatch)))
    (root / "metrics" / "eval.json").unlink()

    wrong = "wrong-" + server.password
    done = sh("dvc repro --force --single-item eval", root, env, MLFLOW_TRACKING_USERNAME=server.user,
              MLFLOW_TRACKING_PASSWORD=wrong)
    assert done.returncode != 0
    (line,) = [line for line in (done.stdout + done.stderr).splitlines() if "run not logged" in line]
    assert line.startswith("error: eval: run not logged: ")
    assert f"{server.uri} refused the credentials of user '{server.user}'" in line
    assert "MLFLOW_TRACKING_PASSWORD" in line and "varireal eval --log-only" in line
    assert "Traceback" not in done.stdout + done.stderr
    for output in ("eval.json", "predictions.csv", "contact_sheet.png", "eval_run.json"):
        assert (root / "metrics" / output).is_file(), output
    assert len(eval_runs_of(server_runs(server, monkeypatch))) == before

    # README: log what is on disk, then let DVC record the stage.
    fix = sh(readme_blocks()[5], root, env, MLFLOW_TRACKING_USERNAME=server.user,
             MLFLOW_TRACKING_PASSWORD=server.password)
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert "as mlflow run " in fix.stdout and server.uri in fix.stdout
    after = eval_runs_of(server_runs(server, monkeypatch))
    assert len(after) == before + 1
    newest = max(after, key=lambda run: run.info.start_time)
    assert newest.data.metrics["top1"] == pytest.approx(json.loads((root / "metrics/eval.json").read_text())["top1"])
    status = sh("dvc status", root, env)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout + status.stderr
    assert_no_secret(server, root, [done.stdout, done.stderr, fix.stdout, fix.stderr])


@pytest.mark.slow
def test_server_down_keeps_the_outputs_and_log_only_logs_them_later(dvc_project, tracking_server, monkeypatch):
    root, env = dvc_project
    server = tracking_server
    params = merged(yaml.safe_load((root / "params.yaml").read_text()), {"tracking": {"uri": server.uri}})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))  # as test (a) left it
    down = closed_port_uri()
    (root / "down.yaml").write_text(yaml.safe_dump(merged(params, {"tracking": {"uri": down}}), sort_keys=False))
    before = len(eval_runs_of(server_runs(server, monkeypatch)))
    for output in ("eval.json", "predictions.csv", "contact_sheet.png"):
        (root / "metrics" / output).unlink(missing_ok=True)

    start = time.monotonic()
    done = sh("varireal eval --params down.yaml", root, env, MLFLOW_TRACKING_USERNAME=server.user,
              MLFLOW_TRACKING_PASSWORD=server.password)
    took = time.monotonic() - start
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "not logged" in line or "Retrying" in line]
    assert line.startswith(f"error: eval: run not logged: {down} is unreachable")
    assert "Traceback" not in done.stderr
    assert "varireal eval --log-only" in line
    assert done.stdout.startswith("eval: top1=")
    assert took < 120, took  # bounded retries: not MLflow's four minutes
    for output in ("eval.json", "predictions.csv", "contact_sheet.png"):
        assert (root / "metrics" / output).is_file(), output
    saved = json.loads((root / "metrics" / "eval_run.json").read_text())
    assert saved["params"]["tracking.uri"] == down

    # The server again (params.yaml points at it): the same run, as eval would have logged it, lands there.
    done = sh("varireal eval --log-only", root, env, MLFLOW_TRACKING_USERNAME=server.user,
              MLFLOW_TRACKING_PASSWORD=server.password)
    assert done.returncode == 0, done.stdout + done.stderr
    after = eval_runs_of(server_runs(server, monkeypatch))
    assert len(after) == before + 1
    newest = max(after, key=lambda run: run.info.start_time)
    assert newest.data.params["tracking.uri"] == down  # the params the eval ran with
    summary = json.loads((root / "metrics" / "eval.json").read_text())
    assert newest.data.metrics["top1"] == pytest.approx(summary["top1"])
    stored = server.artifacts / newest.info.experiment_id / newest.info.run_id / "artifacts" / "eval.json"
    assert stored.read_bytes() == (root / "metrics" / "eval.json").read_bytes()
    assert_no_secret(server, root, [done.stdout, done.stderr])
