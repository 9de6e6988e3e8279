"""`varireal <stage>`: one subcommand per pipeline stage, each the `cmd` of its dvc.yaml stage.

Heavy libraries are imported inside the stage that needs them, so `varireal --help` is instant.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="VariReal: does the feasibility of synthetic training images matter for CLIP?")
PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file (schema: varireal/params.py).")


@contextlib.contextmanager
def _one_line_errors(command: str, params_file: Path | None = None):
    """A bad parameter: one line and exit 2; any other error a user can act on: one line and exit 1."""
    from varireal.errors import StageError
    from varireal.params import ParamError

    try:
        yield
    except ParamError as err:
        if params_file is not None:
            err.source = str(params_file)  # checks made after loading know the key, not the file
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except StageError as err:
        typer.echo(f"error: {command}: {err}", err=True)
        raise typer.Exit(1) from None


def _run(stage, params: Path) -> None:
    """stage: a module of varireal_pipeline.stages, imported by the command itself (heavy libraries load
    only for the stage that runs)."""
    with _one_line_errors(stage.__name__.rsplit(".", 1)[-1], params):
        stage.main(params)


@app.command()
def fetch(params: Path = PARAMS) -> None:
    """Render or load the dataset into data/raw/ with a few-shot training split."""
    from varireal_pipeline.stages import fetch as stage

    _run(stage, params)


@app.command()
def prompt(params: Path = PARAMS) -> None:
    """Write feasible and infeasible attribute values per class, and the colours of colour values, to
    data/prompts.json."""
    from varireal_pipeline.stages import prompt as stage

    _run(stage, params)


@app.command()
def edit(params: Path = PARAMS) -> None:
    """Edit every training image per attribute and feasibility into data/synthetic/."""
    from varireal_pipeline.stages import edit as stage

    _run(stage, params)


@app.command()
def pretrain(params: Path = PARAMS) -> None:
    """Pretrain the world-CLIP (models/world-clip/) on a captioned corpus of the embedded world."""
    from varireal_pipeline.stages import pretrain as stage

    _run(stage, params)


@app.command()
def score(params: Path = PARAMS) -> None:
    """Score every synthetic image (feasibility, presence, identity, VQA) into data/scores/."""
    from varireal_pipeline.stages import score as stage

    _run(stage, params)


@app.command()
def mix(params: Path = PARAMS) -> None:
    """Select real and synthetic images at the infeasible ratio into data/mixed/train.csv."""
    from varireal_pipeline.stages import mix as stage

    _run(stage, params)


@app.command()
def train(params: Path = PARAMS) -> None:
    """Fine-tune CLIP (LoRA or full) on the mixed set into models/lora/."""
    from varireal_pipeline.stages import train as stage

    _run(stage, params)


@app.command("eval")
def evaluate(
    params: Path = PARAMS,
    log_only: bool = typer.Option(False, "--log-only",
                                  help="Compute nothing: log the outputs the last eval left in metrics/ to "
                                       "tracking.uri (after a tracking server was down or refused the run)."),
) -> None:
    """Top-1 on the real test split into metrics/, and one MLflow run."""
    from varireal_pipeline.stages import eval as stage

    if log_only:
        with _one_line_errors("eval --log-only", params):
            stage.log_only(params)
        return
    _run(stage, params)


@app.command()
def store(params: Path = PARAMS) -> None:
    """Create and migrate the MLflow store of tracking.uri now. Optional: every eval does it under a file
    lock when needed; running it once before `dvc queue start` only keeps that out of the queued runs.
    For a tracking server (http://...), check that it answers and accepts MLFLOW_TRACKING_USERNAME/PASSWORD."""
    from varireal_pipeline import tracking
    from varireal.params import load

    with _one_line_errors("store", params):
        settings = load(params).tracking
        resolved = tracking.prepare_store(settings.uri)
    if tracking.is_server(resolved):
        typer.echo(f"store: {resolved} is a tracking server: it answers and accepts the credentials; it keeps "
                   "its own database and artifacts (its operator migrates them with `mlflow db upgrade`)")
    else:
        typer.echo(f"store: {resolved} is ready")


@app.command()
def report(
    params: Path = PARAMS,
    out: Path = typer.Option(Path("reports"), "--out", help="Folder for report.md, report.csv and the plots."),
    experiment: str = typer.Option(None, "--experiment", help="MLflow experiment; default: tracking.experiment."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=100, help="Resamples of the two-level bootstrap."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    margin: float = typer.Option(1.0, "--margin", min=0.01,
                                 help="Equivalence margin in percentage points of top-1: a comparison is "
                                      "'equivalent' when TOST shows its difference within +-margin."),
) -> None:
    """The paper's table from every eval run in MLflow: top-1 over seeds per dataset, attribute and condition;
    per comparison paired tests over seeds, Holm-corrected, TOST against the margin and a verdict (different,
    equivalent, inconclusive), with how many more seeds would decide; plots; logged as one MLflow run."""
    from varireal_pipeline import report as reporting
    from varireal_pipeline import tracking
    from varireal.params import load

    with _one_line_errors("report", params):
        settings = load(params).tracking
        tracking.check_uri(settings.uri)
        uri, experiment = tracking.resolve_uri(settings.uri), experiment or settings.experiment
        with tracking.server_errors(uri):
            made, files = reporting.make(uri, experiment, out, bootstrap, seed, margin / 100)
        metrics = reporting.summary_metrics(made)
        run_id = tracking.log_run(uri, experiment, "report",
                                  {"report.bootstrap": bootstrap, "report.seed": seed, "report.margin": margin},
                                  metrics, {reporting.REPORT_TAG: "true"}, files)
    typer.echo(f"report: {metrics['runs_read']} runs, {metrics['groups']} groups, {metrics['comparisons']} "
               f"comparisons: {metrics['different']} different, {metrics['equivalent']} equivalent within "
               f"+-{margin:g} pp, {metrics['inconclusive']} inconclusive, {metrics['not_enough_seeds']} with not "
               f"enough seeds; in {out}/ and mlflow run {run_id}")
    for line in reporting.power_lines(made):
        typer.echo(line)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def profile(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A profile in profiles/ (pets, aircraft, cars, flowers102, paper) or a YAML path."),
    params: Path = PARAMS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the dvc command instead of running it."),
) -> None:
    """Run the paper's setup for a dataset as a DVC experiment: `dvc exp run -S key=value ...` for every
    key in profiles/NAME.yaml. Further arguments go to `dvc exp run` (e.g. --queue, -S train.seed=1)."""
    import shlex
    import subprocess

    import yaml

    from varireal_pipeline import profiles

    with _one_line_errors("profile"):  # the error names the profile file, not the params file
        chosen = profiles.load(name)
        profiles.check(chosen, yaml.safe_load(params.read_text()) or {}, str(profiles.path_of(name)))
    command = ["dvc", "exp", "run"]
    for override in profiles.overrides(chosen):
        command += ["-S", override]
    command += ctx.args
    typer.echo(shlex.join(command))
    if not dry_run:
        raise typer.Exit(subprocess.call(command))


@app.command()
def sweep(
    grid: str = typer.Argument(..., help="The grid: paper (the paper's 13 conditions per dataset) | ratio "
                                         "(mix.infeasible_ratio over --ratios)."),
    dataset: str = typer.Option(None, "--dataset", help="The profile the grid runs on: pets, aircraft, cars, "
                                                        "flowers102; paper needs one, ratio runs on params.yaml without."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="train.seed values, comma-separated."),
    ratios: str = typer.Option("0,0.5,1", "--ratios", help="ratio grid: mix.infeasible_ratio values, comma-separated."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Also queue the pretrained model untouched (zero-shot)."),
    mixed: bool = typer.Option(False, "--mixed", help="Also queue real + synthetic at infeasible ratio 0.5 per attribute."),
    cluster: str = typer.Option(None, "--cluster", help="Submit one job per experiment instead of queueing: slurm | "
                                                         "local (submitit's local processes, for a try or a test)."),
    partition: str = typer.Option(None, "--partition", help="cluster: the SLURM partition."),
    account: str = typer.Option(None, "--account", help="cluster: the SLURM account."),
    gpus_per_job: int = typer.Option(1, "--gpus-per-job", min=0, help="cluster: GPUs per job; more than 1 runs "
                                                                       "edit and train under accelerate launch."),
    cpus_per_job: int = typer.Option(8, "--cpus-per-job", min=1, help="cluster: CPU cores per job."),
    time_limit: str = typer.Option("4:00:00", "--time", help="cluster: each job's time limit, as SLURM writes it "
                                                                   "(minutes, H:MM:SS, D-HH:MM:SS)."),
    params: Path = PARAMS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the dvc commands (with --cluster: the job "
                                                          "scripts) instead of running them."),
) -> None:
    """Run a grid of conditions x seeds on top of a profile. Without --cluster: queue one `dvc exp run --queue
    -S ...` each; then `dvc queue start` runs them. With --cluster: one job per experiment, after one job that
    edits the shared pool (README "Several GPUs and several machines"). `varireal report` compares them."""
    import shlex
    import subprocess

    import yaml

    from varireal.errors import StageError
    from varireal_pipeline import cluster as clusters
    from varireal_pipeline import profiles

    with _one_line_errors("sweep"):
        if grid not in profiles.GRIDS:
            raise StageError(f"no grid {grid!r}; grids: {', '.join(profiles.GRIDS)}")
        if grid == "paper" and not dataset:
            raise StageError("the paper grid runs on a dataset's profile: --dataset pets (or aircraft, cars, flowers102)")
        if cluster is not None and cluster not in clusters.CLUSTERS:
            raise StageError(f"--cluster {cluster!r}: one of {', '.join(clusters.CLUSTERS)}")
        seed_list = _numbers("--seeds", seeds, int)
        chosen = profiles.load(dataset) if dataset else {}
        source = str(profiles.path_of(dataset)) if dataset else str(params)
        base = yaml.safe_load(params.read_text()) or {}
        attributes = profiles.validate_merged(chosen, base, source).edit.attributes
        if grid == "paper":
            conditions = profiles.paper_conditions(attributes, zero_shot, mixed)
        else:
            conditions = profiles.ratio_conditions(_numbers("--ratios", ratios, float))
        found = profiles.sweep_overrides(chosen, base, conditions, seed_list, source)
        if cluster is not None:
            jobs = clusters.plan(profiles.overrides(chosen), found, gpus_per_job)
            submission = clusters.prepare()
            slurm = clusters.slurm_parameters(partition, gpus_per_job, cpus_per_job,
                                              clusters.minutes(time_limit), account)
    if cluster is not None:
        with _one_line_errors("sweep"):
            if dry_run:
                for index, job in enumerate(jobs):
                    typer.echo(f"# --- job {index + 1} of {len(jobs)}: {job.name} ---")
                    typer.echo(clusters.sbatch_text(submission, job, slurm, None if index == 0 else "afterok:<pool job>"))
                typer.echo(f"# {len(jobs) - 1} experiments after 1 pool job; nothing submitted (--dry-run)")
                return
            clusters.submit(submission, jobs, cluster, slurm, echo=typer.echo)
        where = "origin" if submission.remote != str(submission.repo) else "this repository"
        done = "finished" if cluster == "local" else "submitted (`squeue --me`)"
        typer.echo(f"# {len(jobs) - 1} experiments {done}; they push to {where}: `dvc exp pull origin` "
                   f"then `dvc exp show`; logs in {submission.folder}/logs")
        return
    for label, overrides in found:
        command = ["dvc", "exp", "run", "--queue", *[arg for o in overrides for arg in ("-S", o)]]
        typer.echo(f"# {label}\n{shlex.join(command)}")
        if not dry_run and (code := subprocess.call(command)):
            raise typer.Exit(code)
    typer.echo(f"# {len(found)} experiments" + ("" if dry_run else " queued; run them with `dvc queue start`"))


def _numbers(option: str, text: str, kind):
    from varireal.errors import StageError

    try:
        return [kind(value) for value in text.split(",")]
    except ValueError:
        example = "0,1,2" if kind is int else "0,0.5,1"
        raise StageError(f"{option} {text!r}: numbers separated by commas, e.g. {example}") from None
