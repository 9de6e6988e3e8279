"""The report's input: every finished eval run of an MLflow experiment, as eval_runs records."""

from __future__ import annotations

import tempfile
from pathlib import Path

from varireal_pipeline import eval_runs

REPORT_TAG = "report"  # tag of the report's own MLflow run; later reports skip such runs


def read_runs(uri: str, experiment: str) -> tuple[list[eval_runs.EvalRun], list[str]]:
    """Every finished eval run of the experiment, with its per-image predictions; plus notes on skipped runs."""
    import mlflow

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return [], []  # asking MLflow would create an empty store
    mlflow.set_tracking_uri(uri)
    if mlflow.MlflowClient().get_experiment_by_name(experiment) is None:
        return [], []
    runs, notes = [], []
    skipped = {"report": 0, "unfinished": 0, "not eval": 0, "no predictions": 0}
    with tempfile.TemporaryDirectory(prefix="varireal-report-") as tmp:
        for found in mlflow.search_runs(experiment_names=[experiment], output_format="list"):
            if found.data.tags.get(REPORT_TAG) == "true":
                skipped["report"] += 1
            elif found.info.status != "FINISHED":
                skipped["unfinished"] += 1
            elif not eval_runs.is_eval_run(found):
                skipped["not eval"] += 1
            else:
                run = eval_runs.read(found, uri, Path(tmp))
                if run.predictions is None:
                    skipped["no predictions"] += 1  # still counted by its top1 metric
                runs.append(run)
    if skipped["report"] or skipped["unfinished"] or skipped["not eval"]:
        notes.append(f"Skipped {skipped['report']} report run(s), {skipped['unfinished']} unfinished run(s) and "
                     f"{skipped['not eval']} run(s) without a `{eval_runs.CONDITION_TAG}` tag or "
                     f"`{eval_runs.TOP1_METRIC}` metric.")
    if skipped["no predictions"]:
        notes.append(f"{skipped['no predictions']} run(s) have no readable {eval_runs.PREDICTIONS_CSV}: they count "
                     "in means, stds and the tests over seeds, not in McNemar's test or the bootstrap.")
    return runs, notes
