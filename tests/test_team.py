"""Team and cluster scale (README "Sharing data and models: a DVC remote", "Several GPUs and several
machines"): two clones of one git remote sharing a DVC remote, and a grid submitted as one job per
experiment through submitit's local executor, logging to a real MLflow server."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY_CLIP, merged, with_model
from launching import free_port

BIN = Path(sys.executable).parent


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def user_env() -> dict:
    """A user's shell: no DVC_* of an outer run, the installed `varireal`, `dvc` and `mlflow`, a git identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return env | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def shell(env: dict):
    def sh(*args: str, cwd: Path, check=True, timeout=600) -> str:
        with tempfile.TemporaryFile("w+") as output:  # a file, not a pipe: see test_pipeline.dvc_project
            result = subprocess.run(args, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=timeout)
            output.seek(0)
            text = output.read()
        if check and result.returncode:
            raise AssertionError(f"{' '.join(args)} failed in {cwd}:\n{text}")
        return text

    return sh


@pytest.fixture
def team(tmp_path):
    """A bare git repository as the team's git remote and project A, the small pipeline committed and
    pushed to it. Returns (hub, A, sh, write_params)."""
    sh = shell(user_env())
    hub, a = tmp_path / "hub.git", tmp_path / "a"
    sh("git", "init", "-q", "--bare", "-b", "main", str(hub), cwd=tmp_path)
    a.mkdir()
    shutil.copy(REPO / "dvc.yaml", a)
    (a / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    (a / ".gitignore").write_text((REPO / ".gitignore").read_text())

    def write_params(**overrides):
        params = merged(merged(yaml.safe_load((REPO / "params.yaml").read_text()),
                               with_model("tiny-clip.json")), overrides)
        (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    write_params()
    sh("git", "init", "-q", "-b", "main", cwd=a)
    sh("dvc", "init", "-q", cwd=a)
    sh("dvc", "config", "core.analytics", "false", cwd=a)
    sh("git", "remote", "add", "origin", str(hub), cwd=a)
    return hub, a, sh, write_params


def commit_and_push(sh, repo: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", message, cwd=repo)
    sh("git", "push", "-q", "origin", "main", cwd=repo)


@pytest.mark.slow  # three DVC runs: about 2 minutes on 2 cores
def test_a_teammate_pulls_the_pool_and_checkpoint_and_reproduces_without_editing(team, tmp_path):
    hub, a, sh, _ = team
    store = tmp_path / "dvc-store"  # the team's DVC remote: a shared folder (S3, GCS, SSH the same way)
    sh("dvc", "remote", "add", "-d", "team", str(store), cwd=a)
    commit_and_push(sh, a, "project")
    sh("dvc", "repro", cwd=a)
    commit_and_push(sh, a, "first run")
    assert "files pushed" in sh("dvc", "push", cwd=a)
    sh("dvc", "exp", "run", "-n", "half", "-S", "mix.infeasible_ratio=0.5", cwd=a)
    sh("dvc", "exp", "push", "origin", "half", cwd=a)  # its git ref to the hub, its outputs to the store

    b = tmp_path / "b"
    sh("git", "clone", "-q", str(hub), str(b), cwd=tmp_path)
    pulled = sh("dvc", "pull", cwd=b)
    assert "models/lora" in pulled and "fetched" in pulled
    # Everything came from the store, predictions and contact sheet included: nothing to run.
    assert ran(sh("dvc", "repro", cwd=b)) == []
    assert "up to date" in sh("dvc", "status", cwd=b)
    # Re-evaluating the pulled checkpoint on the pulled test split gives the committed table and logs B's
    # own MLflow run; edit and train never ran on B.
    assert ran(sh("dvc", "repro", "--force", "--single-item", "eval", cwd=b)) == ["eval"]
    assert sh("git", "status", "--porcelain", cwd=b) == ""  # metrics/eval.json: the committed numbers
    committed = json.loads(sh("git", "show", "HEAD:metrics/eval.json", cwd=a))  # A's workspace holds `half`
    assert json.loads((b / "metrics/eval.json").read_text()) == committed
    # A new condition on B reuses the pulled pool: mix, train and eval only.
    assert ran(sh("dvc", "exp", "run", "-S", "mix.infeasible_ratio=1", cwd=b)) == ["mix", "train", "eval"]

    # A's experiment: its git ref and its outputs.
    sh("dvc", "exp", "pull", "origin", "half", cwd=b)
    sh("dvc", "exp", "apply", "half", cwd=b)
    assert yaml.safe_load((b / "params.yaml").read_text())["mix"]["infeasible_ratio"] == 0.5
    assert "up to date" in sh("dvc", "status", cwd=b)  # every output of `half` is there, none re-runs
    assert json.loads((b / "metrics/eval.json").read_text())["condition"] == "mixed"


def stop(process) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def mlflow_server(tmp_path: Path, env: dict):
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        env=env, stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)  # its own process group: the server's workers stop with it
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(1)
        assert process.poll() is None, (tmp_path / "server.log").read_text()
    stop(process)
    raise AssertionError("mlflow server did not answer:\n" + (tmp_path / "server.log").read_text())


@pytest.mark.slow  # a pool job and 4 experiment jobs: about 3 minutes on 2 cores
def test_cluster_sweep_edits_the_pool_once_and_pushes_one_experiment_per_job(team, tmp_path):
    hub, a, sh, write_params = team
    server, url = mlflow_server(tmp_path, user_env())
    try:
        write_params(tracking={"uri": url, "experiment": "cluster"}, train={"threads": 1})
        commit_and_push(sh, a, "project on the team's server")
        out = sh("varireal", "sweep", "ratio", "--ratios", "0,1", "--seeds", "0,1", "--cluster", "local",
                 "--time", "20", cwd=a)
        names = {"ratio-0-seed-0", "ratio-0-seed-1", "ratio-1-seed-0", "ratio-1-seed-1"}
        assert all(f"experiment {name}" in out for name in names), out
        assert "4 experiments finished" in out

        # The pool: edited by the pool job only; every experiment job restored it from the run cache.
        logs = [out.read_text() + out.with_suffix(".err").read_text()
                for out in a.glob(".dvc/tmp/cluster/*/logs/*_log.out")]
        assert len(logs) == 5, out
        pool_stages = ["fetch", "prompt", "edit", "pretrain", "score"]
        assert sorted(ran(log) for log in logs) == [pool_stages] + [["mix", "train", "eval"]] * 4
        assert sum("Stage 'edit' is cached" in log for log in logs) == 4
        # Each clone links the pool from the shared cache instead of copying it.
        manifests = list(a.glob(".dvc/tmp/cluster/*/ratio-*/data/synthetic/manifest.csv"))
        assert len(manifests) == 4 and all(m.is_symlink() or m.stat().st_nlink > 1 for m in manifests)

        # 4 runs on the server, one per experiment, all on the one pool.
        import mlflow

        client = mlflow.MlflowClient(url)
        runs = client.search_runs([client.get_experiment_by_name("cluster").experiment_id])
        assert {r.data.tags["dvc.experiment"] for r in runs} == names and len(runs) == 4
        assert all(r.info.status == "FINISHED" and "top1" in r.data.metrics for r in runs)
        assert len({r.data.tags["dvc.synthetic_md5"] for r in runs}) == 1
        assert {(r.data.params["mix.infeasible_ratio"], r.data.params["train.seed"]) for r in runs} == {
            ("0.0", "0"), ("0.0", "1"), ("1.0", "0"), ("1.0", "1")}

        # The jobs pushed to the hub: the submitting repository pulls and shows them, outputs included
        # (the jobs wrote them into its cache).
        assert sh("dvc", "exp", "list", "--name-only", cwd=a).split() == []
        sh("dvc", "exp", "pull", "origin", cwd=a)
        shown = sh("dvc", "exp", "show", "--json", "--no-pager", cwd=a)
        shown = json.loads(shown[shown.index("["):])
        assert {e["name"] for row in shown for e in row.get("experiments") or []} == names
        sh("dvc", "exp", "apply", "ratio-1-seed-1", cwd=a)
        assert "up to date" in sh("dvc", "status", cwd=a)
    finally:
        stop(server)


@pytest.fixture
def committed(tmp_path):
    """The project itself (params, dvc.yaml, profiles) committed in a fresh git + DVC repository."""
    sh = shell(user_env())
    for name in ("params.yaml", "dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, tmp_path)
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    sh("git", "init", "-q", "-b", "main", cwd=tmp_path)
    sh("dvc", "init", "-q", cwd=tmp_path)
    sh("git", "add", "-A", cwd=tmp_path)
    sh("git", "commit", "-qm", "project", cwd=tmp_path)
    return tmp_path, sh


def jobs_of(text: str) -> dict[str, str]:
    """--dry-run output: job name -> its sbatch text and script."""
    parts = re.split(r"^# --- job \d+ of \d+: (\S+) ---$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_cluster_dry_run_prints_a_pool_job_then_one_sbatch_job_per_experiment(committed):
    root, sh = committed
    out = sh("varireal", "sweep", "paper", "--dataset", "pets", "--seeds", "0", "--cluster", "slurm",
             "--partition", "gpu", "--gpus-per-job", "2", "--time", "8:00:00", "--dry-run", cwd=root)
    jobs = jobs_of(out)
    assert list(jobs)[0] == "pool" and len(jobs) == 1 + 13
    assert "real-only-seed-0" in jobs and "synthetic-infeasible-texture-seed-0" in jobs
    commit = sh("git", "rev-parse", "HEAD", cwd=root).strip()
    cache = sh("dvc", "cache", "dir", cwd=root).strip()
    launcher = "accelerate launch --multi_gpu --num_machines 1 --num_processes 2 -m"
    for name, text in jobs.items():
        for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --time=480",
                     f"#SBATCH --job-name=varireal-{name}", f"git checkout --quiet --detach {commit}",
                     f"dvc cache dir --local {cache}", "dvc config --local cache.shared group",
                     "dvc config --local cache.type reflink,hardlink,symlink,copy",
                     f"edit.launcher=\"{launcher}\"", "dataset.name=pets"):
            assert line in text, (name, line, text)
        assert ("--dependency" in text) == (name != "pool")
        assert (f"dvc exp push origin {name}" in text) == (name != "pool")
        assert ("git ls-remote origin" in text) == (name != "pool")  # a push dvc skipped fails the job
    assert jobs["pool"].rstrip().splitlines()[-1].endswith(" score")  # the pool job stops at the shared stages
    assert "mix.synthetic_per_class=0" in jobs["real-only-seed-0"] and "train.seed=0" in jobs["real-only-seed-0"]
    assert "train.seed" not in jobs["pool"] and " -n " not in jobs["pool"]  # the profile's params only
    assert "nothing submitted" in out and not (root / ".dvc/tmp/cluster").exists()


@pytest.mark.slow  # tens of seconds: make test's 6-minute budget; CI runs it (make test-slow)
def test_cluster_refuses_uncommitted_params_and_bad_options(committed):
    root, sh = committed

    def fails(*args: str) -> str:
        result = subprocess.run(["varireal", "sweep", *args], cwd=root, capture_output=True, text=True,
                                env=user_env())
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result.stderr

    assert "--cluster 'pbs': one of slurm, local" in fails("ratio", "--cluster", "pbs", "--dry-run")
    assert "--time '4h'" in fails("ratio", "--cluster", "slurm", "--time", "4h", "--dry-run")
    assert "--ratios" in fails("ratio", "--ratios", "0,half", "--cluster", "local")
    if not shutil.which("sbatch"):
        assert "no sbatch on this machine" in fails("ratio", "--cluster", "slurm")
    (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("shots: 16", "shots: 8"))
    assert "uncommitted changes (params.yaml): jobs run the committed HEAD" in fails("ratio", "--cluster", "local")
