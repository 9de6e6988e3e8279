"""`make check-repro`'s verdict on the committed dvc.lock and metrics against altered reproductions."""

import copy
import json

import yaml

from check_repro import TOLERANCES, check
from conftest import REPO

LOCK = yaml.safe_load((REPO / "dvc.lock").read_text())
FILES = {path: (REPO / path).read_text() for path in TOLERANCES}


def reproduced(stage: str | None = None, path: str | None = None, **metric_changes):
    """The committed lock with one output of `stage` given other bytes, and metric files changed."""
    lock, files = copy.deepcopy(LOCK), dict(FILES)
    if stage:
        (out,) = [o for o in lock["stages"][stage]["outs"] if o["path"] == path]
        out["md5"] = "0" * 32
    for name, change in metric_changes.items():
        file = {"eval": "metrics/eval.json", "train": "metrics/train.json", "scores": "metrics/scores.json"}[name]
        files[file] = json.dumps(change(json.loads(files[file])))
    return lock, files


def verdict(stage=None, path=None, **changes):
    lock, files = reproduced(stage, path, **changes)
    ok, lines = check(LOCK, lock, FILES, files)
    return ok, "\n".join(lines)


def shifted(key, by):
    def change(metrics):
        metrics[key] += by
        return metrics
    return change


def test_the_committed_lock_reproduces_itself():
    ok, lines = verdict()
    assert ok and "FAIL" not in lines and "data/synthetic: identical" in lines


def test_any_other_byte_in_a_data_stage_fails():
    for stage, path in [("fetch", "data/raw"), ("edit", "data/synthetic"), ("mix", "data/mixed"),
                        ("prompt", "data/prompts.json"), ("edit", "metrics/edit.json")]:
        ok, lines = verdict(stage, path)
        assert not ok and f"FAIL  {stage:7} {path}: other bytes" in lines


def test_model_stages_may_differ_in_bytes_within_the_tolerances():
    ok, lines = verdict("train", "models/lora")
    assert ok and "models/lora: other bytes" in lines
    ok, lines = verdict("eval", "metrics/eval.json", eval=shifted("top1", 0.006))  # 9 of 1500 images
    assert ok and "largest difference 0.006 (top1)" in lines
    ok, lines = verdict("train", "metrics/train.json", train=shifted("final_loss", 5e-4))
    assert ok


def test_model_metrics_beyond_the_tolerances_or_with_other_counts_fail():
    ok, lines = verdict("eval", "metrics/eval.json", eval=shifted("top1", 0.02))
    assert not ok and "top1" in lines and "more than 0.01" in lines
    ok, lines = verdict("eval", "metrics/eval.json", eval=shifted("test_images", 1))
    assert not ok and "must be equal" in lines
    ok, _ = verdict("score", "metrics/scores.json", scores=lambda m: m | {"images": m["images"] - 1})
    assert not ok
