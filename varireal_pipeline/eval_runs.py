"""The eval -> report contract: what one eval records, written by the eval stage and read back by the report.

The MLflow layout of an eval run is a contract that tools outside the code rely on (DESIGN.md "Contracts"):
params flattened (`mix.infeasible_ratio`), metrics `top1`, `top5` and `top1.<class>`, the tags named below and the
artifacts eval.json and predictions.csv. Every name of it is defined here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from varireal import io

from varireal_pipeline import tracking

if TYPE_CHECKING:
    from mlflow.entities import Run as MlflowRun

CONDITION_TAG = "condition"
ATTRIBUTE_TAG = "attribute"
DATASET_TAG = "dataset"
EXPERIMENT_TAG = "dvc.experiment"
GIT_COMMIT_TAG = "git.commit"
MLFLOW_GIT_COMMIT_TAG = "mlflow.source.git.commit"  # the same commit where MLflow's UI shows it
SYNTHETIC_MD5_TAG = "dvc.synthetic_md5"
CHECKPOINT_MD5_TAG = "dvc.checkpoint_md5"
TOP1_METRIC = "top1"
TOP5_METRIC = "top5"
PER_CLASS_METRIC_PREFIX = "top1."
EVAL_JSON = "eval.json"
PREDICTIONS_CSV = "predictions.csv"
# Everything of the run that eval.json and predictions.csv do not hold (params, tags, artifact names), so that
# `varireal eval --log-only` logs exactly the run eval would have logged. Not a DVC output: git ignores it.
RUN_JSON = "eval_run.json"


class Prediction(NamedTuple):
    """One test image: its path, its class and the class the classifier chose."""

    path: str
    actual: str
    predicted: str

    @property
    def correct(self) -> bool:
        return self.actual == self.predicted


@dataclass(frozen=True)
class EvalRun:
    """One evaluation of one trained model on the real test split."""

    params: dict[str, Any]  # flattened params.yaml; read back from MLflow, every value is a string
    # zero-shot | real-only | feasible | mixed | infeasible | synthetic-feasible | synthetic-mixed |
    # synthetic-infeasible (varireal.mixing.CONDITIONS, derived by varireal.mixing.condition_and_attribute)
    condition: str
    attribute: str  # the mixed attribute; "none" for real-only and zero-shot
    dataset: str
    top1: float  # fraction of test images classified right
    per_class: dict[str, float | None]  # top-1 per class; None for a class without test images
    predictions: tuple[Prediction, ...] | None  # None: read back from a run without a readable predictions.csv
    experiment: str  # the DVC experiment that ran the eval; also the MLflow run's name
    git_commit: str
    synthetic_md5: str  # DVC's hash of the synthetic set the model was trained with
    checkpoint_md5: str  # ... and of the checkpoint evaluated
    top5: float | None = None  # fraction with the right class among the 5 best; None: a run logged without it
    run_id: str = ""  # MLflow's, once logged
    start_time: int = 0  # ms since the epoch, once logged

    @property
    def seed(self) -> str:
        return str(self.params.get("train.seed", ""))

    def tags(self) -> dict[str, str]:
        return {
            CONDITION_TAG: self.condition,
            ATTRIBUTE_TAG: self.attribute,
            DATASET_TAG: self.dataset,
            EXPERIMENT_TAG: self.experiment,
            GIT_COMMIT_TAG: self.git_commit,
            MLFLOW_GIT_COMMIT_TAG: self.git_commit,
            SYNTHETIC_MD5_TAG: self.synthetic_md5,
            CHECKPOINT_MD5_TAG: self.checkpoint_md5,
        }

    def metrics(self) -> dict[str, float]:
        """top1 and one top1.<class> per class that has test images (MLflow metrics cannot be None)."""
        top5 = {} if self.top5 is None else {TOP5_METRIC: self.top5}
        return {TOP1_METRIC: self.top1, **top5, **{PER_CLASS_METRIC_PREFIX + name: accuracy
                                           for name, accuracy in self.per_class.items() if accuracy is not None}}

    def summary(self) -> dict[str, Any]:
        """eval.json, the DVC metric of the eval stage; its keys and their order are part of its bytes."""
        top5 = {} if self.top5 is None else {"top5": self.top5}
        return {"top1": self.top1, **top5, "condition": self.condition, "attribute": self.attribute,
                "test_images": len(self.predictions), "per_class": self.per_class}


# -- writing ------------------------------------------------------------------------------------------


def write(run: EvalRun, folder: Path, more_artifacts: tuple[Path, ...] = ()) -> None:
    """Write eval.json, predictions.csv and eval_run.json into folder; more_artifacts (written by the caller
    into folder) are logged with them."""
    io.write_json(folder / EVAL_JSON, run.summary())
    io.write_csv(folder / PREDICTIONS_CSV, [prediction._asdict() for prediction in run.predictions])
    rest = {name: getattr(run, name) for name in ("condition", "attribute", "dataset", "top1", "top5", "per_class",
                                                 "experiment", "git_commit", "synthetic_md5", "checkpoint_md5")}
    # Params as MLflow stores them (strings): JSON would turn a tuple into a list and its str() with it.
    io.write_json(folder / RUN_JSON, {"params": {key: str(value) for key, value in run.params.items()}, **rest,
                                      "more_artifacts": [path.name for path in more_artifacts]})


def written(folder: Path) -> tuple[EvalRun, tuple[Path, ...]]:
    """The run `write` left in folder and its more_artifacts, for logging it later (StageError when they are
    missing or eval.json no longer matches)."""
    from varireal.errors import StageError

    try:
        saved = io.read_json(folder / RUN_JSON)
        more = tuple(folder / name for name in saved.pop("more_artifacts"))
        predictions = tuple(Prediction(row["path"], row["actual"], row["predicted"])
                            for row in io.read_csv(folder / PREDICTIONS_CSV))
        run = EvalRun(**saved, predictions=predictions)
        summary = io.read_json(folder / EVAL_JSON)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StageError(f"no complete eval output in {folder}/ ({type(err).__name__}: {err}): "
                         "run `varireal eval` first") from None
    missing = [str(path) for path in more if not path.is_file()]
    if summary != run.summary() or missing:
        raise StageError(f"{folder}/{EVAL_JSON} or its artifacts {missing or ''} no longer match {folder}/{RUN_JSON} "
                         "(another eval ran part-way?): run `varireal eval` again")
    return run, more


def log(run: EvalRun, folder: Path, tracking_uri: str, mlflow_experiment: str,
        more_artifacts: tuple[Path, ...] = ()) -> str:
    """Log the run written into folder to MLflow with eval.json, predictions.csv and more_artifacts; returns
    the MLflow run id (tracking.TrackingError when a tracking server is down or refuses us)."""
    return tracking.log_run(tracking_uri, mlflow_experiment, run.experiment, run.params, run.metrics(), run.tags(),
                            [folder / EVAL_JSON, folder / PREDICTIONS_CSV, *more_artifacts])


def record(run: EvalRun, folder: Path, tracking_uri: str, mlflow_experiment: str,
           more_artifacts: tuple[Path, ...] = ()) -> str:
    """`write`, then `log`: the outputs are on disk before MLflow is asked."""
    write(run, folder, more_artifacts)
    return log(run, folder, tracking_uri, mlflow_experiment, more_artifacts)


# -- reading ------------------------------------------------------------------------------------------


def is_eval_run(logged: MlflowRun) -> bool:
    """Runs without a condition or a top1 are someone else's (a report, a hand-made run)."""
    return CONDITION_TAG in logged.data.tags and TOP1_METRIC in logged.data.metrics


@contextlib.contextmanager
def _no_progress_bars():
    """MLflow draws a progress bar per downloaded file; reading runs downloads one tiny file per run."""
    before = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"]
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = before


def _read_predictions(run_id: str, tracking_uri: str, download_to: Path) -> tuple[Prediction, ...] | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        with _no_progress_bars():
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=PREDICTIONS_CSV,
                                                        dst_path=str(download_to / run_id),
                                                        tracking_uri=tracking_uri)
        return tuple(Prediction(row["path"], row["actual"], row["predicted"]) for row in io.read_csv(local))
    except (MlflowException, OSError, KeyError):
        return None


def read(logged: MlflowRun, tracking_uri: str, download_to: Path) -> EvalRun:
    """The eval run MLflow holds as `logged` (see is_eval_run), predictions downloaded under download_to.
    Tags that runs of older versions lack read as ""."""
    tags, metrics = logged.data.tags, logged.data.metrics
    per_class = {name[len(PER_CLASS_METRIC_PREFIX):]: float(value) for name, value in metrics.items()
                 if name.startswith(PER_CLASS_METRIC_PREFIX)}
    return EvalRun(
        params=dict(logged.data.params),
        condition=tags[CONDITION_TAG],
        attribute=tags.get(ATTRIBUTE_TAG, ""),
        dataset=tags.get(DATASET_TAG, ""),
        top1=float(metrics[TOP1_METRIC]),
        top5=float(metrics[TOP5_METRIC]) if TOP5_METRIC in metrics else None,
        per_class=per_class,
        predictions=_read_predictions(logged.info.run_id, tracking_uri, download_to),
        experiment=tags.get(EXPERIMENT_TAG, ""),
        git_commit=tags.get(GIT_COMMIT_TAG, ""),
        synthetic_md5=tags.get(SYNTHETIC_MD5_TAG, ""),
        checkpoint_md5=tags.get(CHECKPOINT_MD5_TAG, ""),
        run_id=logged.info.run_id,
        start_time=logged.info.start_time or 0,
    )
