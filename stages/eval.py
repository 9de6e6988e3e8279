"""eval: top-1 on the real test split, metrics/eval.json, predictions for statistics, one MLflow run."""

import os

import torch

from varireal import classifier as clf
from varireal import evaluation, io, mixing, tracking
from varireal.params import load
from varireal.training import resolve_device

from stages import CHECKPOINT, METRICS, RAW, SYNTHETIC


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    torch.set_num_threads(params.train.threads)
    class_names = io.read_json(RAW / "classes.json")
    test = io.read_csv(RAW / "test.csv")
    classifier, preprocess, _ = clf.load(CHECKPOINT)
    device = resolve_device(params.train.device)
    predictions = evaluation.predict(classifier, test, preprocess, params.eval.batch_size, device)
    scores = evaluation.accuracy(test, predictions, class_names)
    condition = mixing.condition(params.mix)
    attribute = "none" if condition == "real-only" else params.mix.attribute

    io.write_json(METRICS / "eval.json", {"top1": scores["top1"], "condition": condition, "attribute": attribute,
                                          "test_images": scores["test_images"], "per_class": scores["per_class"]})
    io.write_csv(METRICS / "predictions.csv", [
        {"path": row["path"], "actual": row["class"], "predicted": class_names[p]}
        for row, p in zip(test, predictions)
    ])

    experiment_name = os.environ.get("DVC_EXP_NAME", "workspace")
    commit = tracking.git_commit()
    metrics = {"top1": scores["top1"], **{f"top1.{name}": acc for name, acc in scores["per_class"].items()
                                         if acc is not None}}
    tags = {
        "condition": condition,
        "attribute": attribute,
        "dataset": params.dataset.name,
        "dvc.experiment": experiment_name,
        "git.commit": commit,
        "mlflow.source.git.commit": commit,
        "dvc.synthetic_md5": tracking.dvc_out_hash("edit", SYNTHETIC.as_posix()),
        "dvc.checkpoint_md5": tracking.dvc_out_hash("train", CHECKPOINT.as_posix()),
    }
    run_id = tracking.log_run(params.tracking.uri, params.tracking.experiment, experiment_name, params.flat(),
                              metrics, tags, [METRICS / "eval.json", METRICS / "predictions.csv"])
    print(f"eval: top1={scores['top1']:.4f} condition={condition} mlflow run {run_id}")
