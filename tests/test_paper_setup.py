"""The paper's setup end to end: the pets profile on a small Oxford-IIIT Pets in its real layout, with
tiny random twins standing in for SD 2.1, SDXL inpainting, RealVisXL + ControlNet + IP-Adapter plus (tests/tiny_sdxl.py)
and for CLIP ViT-B/16.
Only the model ids, sizes and step counts differ from `varireal profile pets`; the code path is the one
a GPU run takes."""

import yaml
from safetensors.torch import load_file, save_file

from varireal import io, records
from varireal_pipeline import profiles
from varireal.classifier import create_clip

from conftest import REPO
from dataset_layouts import write_coop_pets_split, write_pets
from test_stages import STAGES, mlflow_runs, run
from tiny_sdxl import paper_settings
import tiny_vlm


def tiny_stand_ins(tmp_path, tiny_diffusion, tiny_clip_config, vqa_filter: bool = True) -> dict:
    """The params that swap the pets profile's models and sizes for tiny random ones."""
    clip, *_ = create_clip(str(tiny_clip_config), None, seed=5)
    pretrained = tmp_path / "pretrained.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, pretrained)
    # every edit passes the VQA filter
    says_yes = tiny_vlm.llava_next(tmp_path / "llava-next", answer="yes") if vqa_filter else None
    return {
        "dataset": {"root": str(tmp_path / "datasets"), "download": False, "shots": 2, "split": "official"},
        "edit": {"model": tiny_diffusion["inpaint"], "device": "cpu", "per_image": 1, "batch_size": 2,
                 "diffusion": paper_settings(tiny_diffusion),
                 "filter": {"model": str(says_yes) if says_yes else None, "device": "cpu"}},
        "score": {"model": str(tiny_clip_config), "pretrained": str(pretrained), "batch_size": 8, "threads": 1},
        "mix": {"synthetic_per_class": 2},
        "train": {"model": str(tiny_clip_config), "pretrained": str(pretrained), "steps": 3, "epochs": None, "batch_size": 4,
                  "workers": 0, "cache_images": True, "threads": 1},
        "eval": {"batch_size": 8},
    }


def test_pets_profile_runs_every_stage_on_real_layout_data(project, tmp_path, tiny_diffusion, tiny_clip_config):
    classes = write_pets(tmp_path / "datasets")["classes"]
    pets = profiles.load("pets", REPO / "profiles")
    stand_ins = tiny_stand_ins(tmp_path, tiny_diffusion, tiny_clip_config)
    params_file = project(**profiles.merged(pets, stand_ins))
    params = yaml.safe_load(params_file.read_text())
    assert params["edit"]["backend"] == "diffusion" and params["train"]["finetune"] == "lora"
    run(*STAGES)

    assert io.read_json("data/raw/classes.json") == classes
    assert {row["mask_method"] for row in io.read_csv("data/raw/train.csv")} == {"trimap"}
    prompts = records.read_prompts("data/prompts.json").values
    assert prompts["Abyssinian"]["color"]["feasible"]  # from varireal/prompt_bank/pets.yaml

    manifest = io.read_csv("data/synthetic/manifest.csv")
    assert len(manifest) == len(classes) * 2 * 3 * 2  # classes x shots x attributes x feasibilities
    assert {row["backend"] for row in manifest} == {"diffusion"}
    assert {row["filter_cycle"] for row in manifest} == {"1"}  # the paper's VQA filter judged every edit once
    assert io.read_json("metrics/edit.json")["filter"]["passed_first_cycle"] == len(manifest)
    for row in manifest:
        assert row["value"] in prompts[row["class"]][row["attribute"]][row["feasibility"]]

    scores = io.read_csv("data/scores/scores.csv")
    assert [s["path"] for s in scores] == [m["path"] for m in manifest]
    assert set(io.read_json("metrics/scores.json")["auroc_feasibility"]) == {"background", "color", "texture", "all"}

    adapter = load_file("models/lora/adapter/adapter_model.safetensors")
    assert adapter and all(".q_proj.lora_" in key or ".v_proj.lora_" in key for key in adapter)

    (mlflow_run,) = mlflow_runs()
    assert mlflow_run.data.tags["dataset"] == "pets" and mlflow_run.data.tags["condition"] == "feasible"
    assert mlflow_run.data.params["train.model"] == str(tiny_clip_config)
    assert 0 <= mlflow_run.data.metrics["top1"] <= mlflow_run.data.metrics["top5"] <= 1


def test_pets_profile_at_the_official_regime_logs_every_condition(project, tmp_path, tiny_diffusion,
                                                                   tiny_clip_config):
    """The profile's own data regime (CoOp split, every training image, every edit) on a pets fixture in
    CoOp's layout; one edited pool, then mix -> train -> eval per condition of the paper's grid."""
    write_pets(tmp_path / "datasets")
    split = write_coop_pets_split(tmp_path / "datasets")
    pets = profiles.load("pets", REPO / "profiles")
    assert (pets["dataset"]["shots"], pets["dataset"]["split"], pets["mix"]["synthetic_per_class"]) == \
        ("all", "coop", "all")
    stand_ins = tiny_stand_ins(tmp_path, tiny_diffusion, tiny_clip_config, vqa_filter=False)
    for key in ("shots", "split"):
        del stand_ins["dataset"][key]
    del stand_ins["mix"]
    stand_ins["edit"]["attributes"] = ["color"]
    base = profiles.merged(pets, stand_ins)
    project(**base)
    run("fetch", "prompt", "edit", "pretrain", "score")
    real = len(split["train"])
    assert len(io.read_csv("data/raw/train.csv")) == real and len(io.read_csv("data/raw/val.csv")) == len(split["val"])
    assert len(io.read_csv("data/raw/test.csv")) == len(split["test"])

    conditions = {  # the condition tag each setting must log, and its real and synthetic images
        "real-only": ({"mix": {"synthetic_per_class": 0}}, real, 0),
        "synthetic-feasible": ({"mix": {"attribute": "color", "include_real": False}}, 0, real),
        "synthetic-infeasible": ({"mix": {"attribute": "color", "include_real": False, "infeasible_ratio": 1.0}},
                                 0, real),
        "mixed": ({"mix": {"attribute": "color", "infeasible_ratio": 0.5}}, real, real),
        "zero-shot": ({"train": {"finetune": "none"}, "mix": {"synthetic_per_class": 0}}, real, 0),
    }
    for name, (setting, n_real, n_synthetic) in conditions.items():
        project(**profiles.merged(base, setting))
        run("mix", "train", "eval")
        mixed = records.read_mixed("data/mixed/train.csv")
        assert (sum(r.kind == "real" for r in mixed), sum(r.kind == "synthetic" for r in mixed)) == \
            (n_real, n_synthetic), name
        summary = io.read_json("metrics/eval.json")
        assert summary["condition"] == name and list(summary)[:3] == ["top1", "top5", "condition"]
        assert summary["test_images"] == len(split["test"])
    assert io.read_json("metrics/train.json")["steps"] == 0  # zero-shot took no step

    logged = {r.data.tags["condition"]: r for r in mlflow_runs()}
    assert set(logged) == set(conditions)
    for name, mlflow_run in logged.items():
        assert mlflow_run.data.tags["dataset"] == "pets"
        assert mlflow_run.data.tags["attribute"] == ("none" if name in ("real-only", "zero-shot") else "color")
        assert 0 <= mlflow_run.data.metrics["top1"] <= mlflow_run.data.metrics["top5"] <= 1
        assert mlflow_run.data.params["dataset.split"] == "coop" and mlflow_run.data.params["dataset.shots"] == "all"


def test_composite_editor_refuses_free_text_values_before_any_work(project, tmp_path):
    from typer.testing import CliRunner

    from varireal_pipeline.cli import app

    write_pets(tmp_path / "datasets")
    project(dataset={"name": "pets", "root": str(tmp_path / "datasets"), "shots": 2})
    run("fetch", "prompt")
    result = CliRunner().invoke(app, ["edit"])
    assert result.exit_code == 1
    assert result.output.startswith("error: edit: edit.backend composite paints only the embedded world")
    assert "use edit.backend: diffusion" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "synthetic").exists()
