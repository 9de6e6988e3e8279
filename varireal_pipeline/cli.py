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
    grid: str = typer.Argument(..., help="The grid: paper (the paper's 13 conditions per dataset)."),
    dataset: str = typer.Option(..., "--dataset", help="The profile the grid runs on: pets, aircraft, cars, flowers102."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="train.seed values, comma-separated."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Also queue the pretrained model untouched (zero-shot)."),
    mixed: bool = typer.Option(False, "--mixed", help="Also queue real + synthetic at infeasible ratio 0.5 per attribute."),
    params: Path = PARAMS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the dvc commands instead of running them."),
) -> None:
    """Queue a grid of conditions x seeds on top of a profile: one `dvc exp run --queue -S ...` each; then
    `dvc queue start` runs them and `varireal report` compares them."""
    import shlex
    import subprocess

    import yaml

    from varireal.errors import StageError
    from varireal_pipeline import profiles

    with _one_line_errors("sweep"):
        if grid not in profiles.GRIDS:
            raise StageError(f"no grid {grid!r}; grids: {', '.join(profiles.GRIDS)}")
        try:
            seed_list = [int(seed) for seed in seeds.split(",")]
        except ValueError:
            raise StageError(f"--seeds {seeds!r}: whole numbers separated by commas, e.g. 0,1,2") from None
        chosen = profiles.load(dataset)
        base = yaml.safe_load(params.read_text()) or {}
        attributes = profiles.validate_merged(chosen, base, str(profiles.path_of(dataset))).edit.attributes
        commands = profiles.sweep_commands(chosen, base, profiles.paper_conditions(attributes, zero_shot, mixed),
                                           seed_list, str(profiles.path_of(dataset)))
    for label, command in commands:
        typer.echo(f"# {label}\n{shlex.join(command)}")
        if not dry_run and (code := subprocess.call(command)):
            raise typer.Exit(code)
    typer.echo(f"# {len(commands)} experiments" + ("" if dry_run else " queued; run them with `dvc queue start`"))
