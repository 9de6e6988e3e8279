"""Sweeps on a cluster: one job per experiment, submitted through submitit (README "Several GPUs and
several machines").

The submitting repository lies on a filesystem every node sees (a cluster's home or project space).
Every job clones it at the submitting commit into a folder of its own, points the clone's DVC cache
at the submitting repository's cache (one cache for all jobs, `cache.shared group` so a team's jobs
can write it), runs one `dvc exp run -S ...` and pushes the experiment (`dvc exp push origin`) to the
submitting repository's git remote `origin` (the submitting repository itself when it has none).
Every eval logs its run to `tracking.uri`, which for a cluster is a shared server.

The pool is edited once: a first job runs the pipeline up to `score` (fetch, prompt, edit, pretrain,
score: everything the grid shares) with the grid's common params; DVC saves those stages in the shared
cache's run cache, so every experiment job finds them there ("Stage 'edit' is cached - skipping
run") and runs only mix, train and eval. On SLURM the experiment jobs wait for it with
`--dependency=afterok`; the local executor waits for it before submitting them.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from varireal.errors import StageError

CLUSTERS = ("slurm", "local")
SHARED_STAGE = "score"  # the last stage every experiment of a grid shares: its pool and its scores


@dataclass
class Job:
    name: str  # the DVC experiment's name; also the job's folder
    overrides: list[str]  # `-S` values
    target: str | None = None  # a stage to stop at (the pool job); None: the whole pipeline
    push: bool = True


@dataclass
class Submission:
    repo: Path  # the submitting repository's root
    commit: str
    cache: Path  # its DVC cache, shared by every job
    remote: str  # git URL the jobs push their experiments to
    folder: Path  # the jobs' clones and submitit's logs

    def script(self, job: Job) -> str:
        """The job's bash script: clone, share the cache, run the experiment, push it."""
        work = self.folder / job.name
        run = ["dvc", "exp", "run", *([] if job.target else ["-n", job.name])]
        for override in job.overrides:
            run += ["-S", override]
        lines = [
            "set -euo pipefail",
            f"rm -rf {shlex.quote(str(work))}  # a requeued job starts again from a fresh clone",
            f"git clone --quiet {shlex.quote(str(self.repo))} {shlex.quote(str(work))}",
            f"cd {shlex.quote(str(work))}",
            f"git checkout --quiet --detach {self.commit}",
            f"git remote set-url origin {shlex.quote(self.remote)}",
            # --local: the clone's own config, so the experiment commits no change to .dvc/config
            f"dvc cache dir --local {shlex.quote(str(self.cache))}",
            "dvc config --local cache.shared group",
            # links into the cache, not copies: a grid of 40 jobs must not copy the pool 40 times
            "dvc config --local cache.type reflink,hardlink,symlink,copy",
            shlex.join(run + ([job.target] if job.target else [])),
        ]
        if job.push:
            ref = f"refs/exps/{self.commit[:2]}/{self.commit[2:]}/{job.name}"
            lines += [
                shlex.join(["dvc", "exp", "push", "origin", job.name]),
                # dvc exp push exits 0 without pushing when origin holds another experiment of this name
                f'test "$(git rev-parse {ref})" = "$(git ls-remote origin {ref} | cut -f1)" || '
                f'{{ echo "error: experiment {job.name} not pushed: origin has another of that name; '
                f'dvc exp remove -g origin {job.name}" >&2; exit 1; }}',
            ]
        return "\n".join(lines) + "\n"


def experiment_name(label: str) -> str:
    """'feasible background, seed 0' -> 'feasible-background-seed-0' (a valid git ref and DVC name)."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-.").replace("..", ".")


def minutes(text: str) -> int:
    """--time in SLURM's formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) as whole minutes, rounded up."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise StageError(f"--time {text!r}: SLURM's M, M:S, H:M:S or D-H:M:S, e.g. 240 or 4:00:00")
    days, *fields = match.groups()
    numbers = [int(field) for field in fields if field is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = int(days) * 86400 + sum(n * unit for n, unit in zip(numbers, (3600, 60, 1)))
    else:  # M, M:S, H:M:S
        units = {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(numbers)]
        seconds = sum(n * unit for n, unit in zip(numbers, units))
    return max(1, -(-seconds // 60))


def launcher_overrides(gpus_per_job: int) -> list[str]:
    """Several GPUs in a job: edit and train run one process per GPU (README "Several GPUs")."""
    if gpus_per_job <= 1:
        return []
    launcher = f"accelerate launch --multi_gpu --num_machines 1 --num_processes {gpus_per_job} -m"
    return [f'edit.launcher="{launcher}"', f'train.launcher="{launcher}"']


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout.strip("\n")


def prepare() -> Submission:
    """The submission from the repository here; refuses what the jobs could not reproduce."""
    root = _git(Path("."), "rev-parse", "--show-toplevel")
    if not root or not Path(root, ".dvc").is_dir():
        raise StageError("the cluster runs a DVC repository: run it at the root of one (git and `dvc init`)")
    repo = Path(root)
    changed = _git(repo, "status", "--porcelain", "--untracked-files=no")
    if changed:
        files = ", ".join(line[3:] for line in changed.splitlines()[:3])
        raise StageError(f"uncommitted changes ({files}): jobs run the committed HEAD; commit them first")
    cache = subprocess.run(["dvc", "cache", "dir"], cwd=repo, capture_output=True, text=True)
    if cache.returncode:
        raise StageError(f"dvc cache dir: {cache.stderr.strip() or cache.stdout.strip()}")
    remote = _git(repo, "remote", "get-url", "origin") or str(repo)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Submission(repo=repo, commit=_git(repo, "rev-parse", "HEAD"), cache=Path(cache.stdout.strip()),
                      remote=remote, folder=repo / ".dvc/tmp/cluster" / stamp)


def plan(common: list[str], experiments: list[tuple[str, list[str]]], gpus_per_job: int) -> list[Job]:
    """The pool job, then one job per experiment; common: the overrides every experiment shares."""
    launchers = launcher_overrides(gpus_per_job)
    jobs = [Job("pool", common + launchers, target=SHARED_STAGE, push=False)]
    jobs += [Job(experiment_name(label), overrides + launchers) for label, overrides in experiments]
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise StageError(f"two experiments of the grid share a name: {names}")
    return jobs


def slurm_parameters(partition: str | None, gpus_per_job: int, cpus_per_job: int,
                     time_min: int, account: str | None) -> dict:
    params = {"time": time_min, "gpus_per_node": gpus_per_job,
              "cpus_per_task": cpus_per_job, "ntasks_per_node": 1, "nodes": 1}
    if partition:
        params["partition"] = partition
    if account:
        params["account"] = account
    return params


def sbatch_text(submission: Submission, job: Job, parameters: dict, dependency: str | None) -> str:
    """What submitit would hand to sbatch for the job (its own template), then the job's script, which
    submitit runs inside it (pickled; shown here as text)."""
    from submitit.slurm.slurm import _make_sbatch_string  # the text SlurmExecutor submits

    command = f"python -u -m submitit.core._submit {shlex.quote(str(submission.folder / 'logs'))}"
    text = _make_sbatch_string(command=command, folder=submission.folder / "logs", job_name=f"varireal-{job.name}",
                               **parameters, dependency=dependency)
    return text + "# the job runs:\n" + "".join(f"#   {line}\n" for line in submission.script(job).splitlines())


def _pool_stages(repo: Path) -> list[str]:
    """The pool job's stages: dvc.yaml's, in its (pipeline) order, up to SHARED_STAGE."""
    import yaml

    stages = list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    return stages[:stages.index(SHARED_STAGE) + 1]


def submit(submission: Submission, jobs: list[Job], cluster: str, parameters: dict,
           echo=print) -> list[tuple[Job, object]]:
    """Submit the pool job, then the experiments (after it); local: run them here and wait for all."""
    import submitit
    from submitit.helpers import CommandFunction

    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise StageError("--cluster slurm: no sbatch on this machine; run it on the cluster's login node "
                         "(--dry-run prints the jobs anywhere)")
    logs = submission.folder / "logs"
    submission.folder.mkdir(parents=True, exist_ok=True)
    if cluster == "local":
        executor = submitit.LocalExecutor(folder=logs)
        executor.update_parameters(timeout_min=parameters["time"], gpus_per_node=parameters["gpus_per_node"])
    else:
        executor = submitit.SlurmExecutor(folder=logs)
        executor.update_parameters(**parameters)

    def launch(job: Job):
        if cluster == "slurm":
            executor.update_parameters(job_name=f"varireal-{job.name}")
        return executor.submit(CommandFunction(["bash", "-c", submission.script(job)]))

    pool, experiments = jobs[0], jobs[1:]
    pool_job = launch(pool)
    echo(f"# job {pool_job.job_id}: the pool ({', '.join(_pool_stages(submission.repo))}), once for the whole grid")
    if cluster == "local":
        _wait(pool, pool_job)
    else:
        executor.update_parameters(dependency=f"afterok:{pool_job.job_id}")
    submitted = [(pool, pool_job)]
    for job in experiments:
        submitted.append((job, launch(job)))
        echo(f"# job {submitted[-1][1].job_id}: experiment {job.name}")
    if cluster == "local":
        for job, handle in submitted[1:]:
            _wait(job, handle)
    return submitted


def _wait(job: Job, handle) -> None:
    try:
        handle.result()
    except Exception as err:  # submitit's FailedJobError carries the job's stderr
        tail = str(err).strip().splitlines()[-1:] or ["(no output)"]
        raise StageError(f"job {handle.job_id} ({job.name}) failed: {tail[0]}; log: {handle.paths.stdout}") from None
