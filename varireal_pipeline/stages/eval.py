"""eval: top-1 on the real test split, metrics/eval.json, predictions for statistics, a contact sheet of
the run's edits, one MLflow run."""

import os


from varireal import classifier as clf
from varireal import datasets, evaluation, io, mixing, sheets
from varireal_pipeline import tracking
from varireal.params import load
from varireal.runtime import fix_cpu_threads, resolve_device

from varireal_pipeline.stages import CHECKPOINT, METRICS, MIXED, RAW, SYNTHETIC


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    fix_cpu_threads(params.train.threads)
    class_names = io.read_json(RAW / "classes.json")
    test = io.read_csv(RAW / "test.csv")
    classifier, preprocess, _ = clf.load(CHECKPOINT, datasets.spec(params.dataset.name).template)
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
    sheet = sheets.contact_sheet(io.read_csv(MIXED / "train.csv"), io.read_csv(SYNTHETIC / "manifest.csv"),
                                 f"{experiment_name}: condition {condition}, attribute {attribute}, "
                                 f"infeasible_ratio {params.mix.infeasible_ratio}, top1 {scores['top1']:.4f}")
    sheets.write_png(sheet, METRICS / "contact_sheet.png")

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
    artifacts = [METRICS / "eval.json", METRICS / "predictions.csv", METRICS / "contact_sheet.png"]
    run_id = tracking.log_run(params.tracking.uri, params.tracking.experiment, experiment_name, params.flat(),
                              metrics, tags, artifacts)
    print(f"eval: top1={scores['top1']:.4f} condition={condition} mlflow run {run_id}")
