"""eval: top-1 and top-5 on the real test split, metrics/eval.json, predictions for statistics, a contact sheet of
the run's edits, one MLflow run.

Every output is on disk before MLflow is asked. A tracking server that is down or refuses the credentials
fails the stage with one line (so DVC does not record a run that MLflow lacks) and leaves the outputs for
`varireal eval --log-only` (`log_only`), which logs the same run without computing anything.
"""

import os

from varireal import classifier as clf
from varireal import datasets, evaluation, io, mixing, records, sheets
from varireal.params import load
from varireal.runtime import fix_cpu_threads, resolve_device

from varireal_pipeline import eval_runs, tracking
from varireal_pipeline.stages import CHECKPOINT, METRICS, MIXED, RAW, SYNTHETIC


SHEET = METRICS / "contact_sheet.png"


def _not_logged(err: tracking.TrackingError) -> tracking.TrackingError:
    return tracking.TrackingError(f"run not logged: {err}; the outputs are in {METRICS}/: log them with "
                                  "`varireal eval --log-only` once the server takes them")


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    tracking.check_uri(params.tracking.uri)  # before any work, like every other bad param
    fix_cpu_threads(params.train.threads)
    class_names = io.read_json(RAW / "classes.json")
    test = records.read_split(RAW / "test.csv")
    classifier, preprocess, _ = clf.load(CHECKPOINT, datasets.template(params.dataset.name, params.train.template))
    device = resolve_device(params.train.device)
    best = evaluation.ranked(classifier, test, preprocess, params.eval.batch_size, device)
    predictions = [labels[0] for labels in best]
    scores = evaluation.accuracy(test, predictions, class_names)
    condition, attribute = mixing.condition_and_attribute(params.mix, trained=params.train.finetune != "none")
    experiment_name = os.environ.get("DVC_EXP_NAME", "workspace")

    sheet = sheets.contact_sheet(records.read_mixed(MIXED / "train.csv"), records.read_manifest(SYNTHETIC / "manifest.csv"),
                                 f"{experiment_name}: condition {condition}, attribute {attribute}, "
                                 f"infeasible_ratio {params.mix.infeasible_ratio}, top1 {scores['top1']:.4f}")
    sheets.write_png(sheet, SHEET)

    run = eval_runs.EvalRun(
        params=params.flat(),
        condition=condition,
        attribute=attribute,
        dataset=params.dataset.name,
        top1=scores["top1"],
        top5=evaluation.top_k(test, best),
        per_class=scores["per_class"],
        predictions=tuple(eval_runs.Prediction(row.path, row.class_name, class_names[p])
                          for row, p in zip(test, predictions)),
        experiment=experiment_name,
        git_commit=tracking.git_commit(),
        synthetic_md5=tracking.dvc_out_hash("edit", SYNTHETIC.as_posix()),
        checkpoint_md5=tracking.dvc_out_hash("train", CHECKPOINT.as_posix()),
    )
    eval_runs.write(run, METRICS, more_artifacts=(SHEET,))
    try:
        run_id = eval_runs.log(run, METRICS, params.tracking.uri, params.tracking.experiment, more_artifacts=(SHEET,))
    except tracking.TrackingError as err:
        print(f"eval: top1={scores['top1']:.4f} top5={run.top5:.4f} condition={condition}")
        raise _not_logged(err) from None
    print(f"eval: top1={scores['top1']:.4f} top5={run.top5:.4f} condition={condition} mlflow run {run_id}")


def log_only(params_path="params.yaml") -> None:
    """Log the outputs the last eval left in metrics/ to tracking.uri as the run eval would have logged."""
    params = load(params_path)
    tracking.check_uri(params.tracking.uri)
    run, more = eval_runs.written(METRICS)
    try:
        run_id = eval_runs.log(run, METRICS, params.tracking.uri, params.tracking.experiment, more_artifacts=more)
    except tracking.TrackingError as err:
        raise _not_logged(err) from None
    print(f"eval: logged {METRICS}/ (top1={run.top1:.4f} condition={run.condition}) as mlflow run {run_id} "
          f"in {tracking.redacted(params.tracking.uri)}")
