"""Each stage through the CLI, in order, on the small params: outputs exist and hold the right content."""

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from varireal import io, records
from varireal.classifier import create_clip
from varireal.datasets import world

STAGES = ["fetch", "prompt", "edit", "pretrain", "score", "mix", "train", "eval"]


def run(*stages):
    from varireal_pipeline.cli import app

    for stage in stages:
        result = CliRunner().invoke(app, [stage])
        assert result.exit_code == 0, f"{stage}: {result.output}\n{result.exception!r}"


def mlflow_runs():
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{Path('mlflow.db').resolve()}")
    return mlflow.search_runs(experiment_names=["varireal"], output_format="list")


def test_pipeline_stages_write_their_outputs(project):
    project(train={"steps": 3})
    run(*STAGES)
    classes = io.read_json("data/raw/classes.json")
    assert classes == world.CLASS_NAMES

    prompts = records.read_prompts("data/prompts.json").values
    assert set(prompts) == set(classes)

    manifest = io.read_csv("data/synthetic/manifest.csv")
    assert len(manifest) == len(classes) * 2 * 3 * 2 * 2  # classes x shots x attributes x feasibilities x per_image
    assert all(Path(row["path"]).is_file() for row in manifest)
    assert {row["backend"] for row in manifest} == {"composite"}
    for row in manifest:
        assert world.is_feasible(row["class"], row["attribute"], row["value"]) == (row["feasibility"] == "feasible")

    mixed = io.read_csv("data/mixed/train.csv")
    assert len(mixed) == len(classes) * (2 + 4)
    assert {row["feasibility"] for row in mixed if row["source"] == "synthetic"} == {"feasible"}

    # The default: LoRA on the world-CLIP the pretrain stage wrote.
    assert Path("models/world-clip/model.safetensors").is_file()
    assert io.read_json("metrics/pretrain.json")["steps"] == 2
    assert Path("models/lora/adapter/adapter_model.safetensors").is_file() and Path("models/lora/head.safetensors").is_file()
    assert not Path("models/lora/model.safetensors").exists()
    assert io.read_json("models/lora/classifier.json")["pretrained"] == "models/world-clip/model.safetensors"
    assert io.read_json("metrics/train.json")["steps"] == 3

    # eval.json's top1 is the accuracy of the predictions it kept, computed again here.
    report = io.read_json("metrics/eval.json")
    predictions = io.read_csv("metrics/predictions.csv")
    assert len(predictions) == len(classes) * 3
    correct = sum(p["actual"] == p["predicted"] for p in predictions)
    assert report["top1"] == pytest.approx(correct / len(predictions), abs=1e-6)
    assert report["condition"] == "feasible"

    (run_info,) = mlflow_runs()
    assert run_info.data.metrics["top1"] == pytest.approx(report["top1"])
    assert run_info.data.params["mix.infeasible_ratio"] == "0.0"
    assert run_info.data.tags["condition"] == "feasible"
    assert run_info.data.tags["attribute"] == "all"
    assert {"git.commit", "dvc.experiment", "dvc.synthetic_md5", "dvc.checkpoint_md5"} <= set(run_info.data.tags)
    assert Path(run_info.info.artifact_uri.removeprefix("file://"), "eval.json").is_file()


def test_training_learns_the_training_set(project):
    # Full fine-tuning from random weights: the mechanics of training, not what LoRA can reach.
    project(train={"steps": 100, "lr": 0.003, "batch_size": 10, "augment": False, "finetune": "full", "pretrained": None},
            mix={"synthetic_per_class": 0})
    run("fetch", "prompt", "edit", "mix", "train")
    losses = [float(row["loss"]) for row in io.read_csv("metrics/train_loss.csv")]
    chance = math.log(len(world.CLASS_NAMES))
    assert sum(losses[:5]) / 5 > 0.9 * chance  # starts at chance ...
    assert sum(losses[-5:]) / 5 < 0.5 * chance  # ... and fits the 20 images it sees


def test_training_is_deterministic(project):
    project(train={"steps": 4, "workers": 1})  # augmentation runs in a loader process: seeded all the same
    run("fetch", "prompt", "edit", "pretrain", "mix", "train")
    adapter = Path("models/lora/adapter/adapter_model.safetensors")
    first = adapter.read_bytes()
    run("train")
    assert adapter.read_bytes() == first


def test_lora_adapts_only_adapters_of_a_pretrained_clip(project, tiny_clip_config, tmp_path):
    # A "pretrained" checkpoint: a random tiny CLIP saved the way open_clip loads local weights.
    clip, *_ = create_clip(str(tiny_clip_config), None, seed=123)
    weights_file = tmp_path / "pretrained.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, weights_file)
    project(train={"finetune": "lora", "pretrained": str(weights_file), "steps": 3,
                   "lora": {"rank": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"],
                            "towers": ["image", "text"]}})
    run(*STAGES)

    adapter = load_file("models/lora/adapter/adapter_model.safetensors")
    assert not Path("models/lora/model.safetensors").exists()
    assert adapter and all("lora_" in key for key in adapter)
    assert any(".visual." in key for key in adapter) and any(".transformer." in key for key in adapter)
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert any(v.abs().sum() > 0 for v in lora_b)  # training moved the adapters off their zero init

    trainable = io.read_json("metrics/train.json")["trainable_parameters"]
    head = len(world.CLASS_NAMES) * 32
    assert trainable == sum(v.numel() for v in adapter.values()) + head

    # Loading the checkpoint rebuilds the same classifier: its predictions match eval's.
    from varireal import classifier as clf, datasets
    from varireal.evaluation import predict

    model, preprocess, meta = clf.load(Path("models/lora"), datasets.spec("world").template)
    assert meta["pretrained"] == str(weights_file)
    test = records.read_split("data/raw/test.csv")
    predicted = predict(model, test, preprocess, 16, torch.device("cpu"))
    assert [world.CLASS_NAMES[p] for p in predicted] == [r["predicted"] for r in io.read_csv("metrics/predictions.csv")]


def test_paper_training_params_through_the_stages(project):
    # The official recipe's training keys on the small world: held-out validation picks the checkpoint.
    project(train={"steps": None, "epochs": 1, "lr_min": 1e-6, "weight_decay": 1e-4, "augment": "paper",
                   "template": "a creature photo of a {}", "head": "text", "val_fraction": 0.5,
                   "select": "best-val", "val_every": 1})
    run(*STAGES)
    summary = io.read_json("metrics/train.json")
    classes = len(world.CLASS_NAMES)
    assert summary["val_images"] == classes  # shots 2: one per class held out ...
    assert summary["real_images"] == classes  # ... and not trained on
    mixed = records.read_mixed("data/mixed/train.csv")
    assert summary["synthetic_images"] < sum(r.kind == "synthetic" for r in mixed)  # nor are their edits
    assert summary["steps"] == math.ceil(max(summary["real_images"], summary["synthetic_images"]) / 4)
    assert summary["checkpoint_step"] == summary["val_best_step"]
    judged = [row["val_top1"] for row in io.read_csv("metrics/train_loss.csv")]
    assert len(judged) == summary["steps"] and all(judged)  # val_every 1: judged at every step
    assert not load_file("models/lora/head.safetensors")["head_offset"].any()  # head text: no offset
    assert "top1" in io.read_json("metrics/eval.json")


def test_best_val_without_a_validation_split_is_refused(project):
    project(train={"select": "best-val", "pretrained": None})
    run("fetch", "prompt", "edit", "mix")
    from varireal_pipeline.cli import app

    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code != 0 and "train.val_fraction" in result.output
