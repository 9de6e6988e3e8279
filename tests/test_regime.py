"""The paper's data regime: CoOp's splits, every training image (dataset.shots: all), top-5 beside top-1,
and the paper's grid of conditions as one command (`varireal sweep paper`)."""

import json
import shlex

import pytest
import torch
from typer.testing import CliRunner

from varireal import evaluation, io
from varireal.records import SplitRow
from varireal_pipeline.cli import app

from conftest import REPO
from dataset_layouts import TEST_PER_CLASS, TRAIN_PER_CLASS, write_coop_pets_split, write_pets
from test_stages import run

# CoOp's split of Oxford-IIIT Pets: train, val, test images. Source: CoOp's DATASETS.md, whose split file
# split_zhou_OxfordPets.json the paper's code keeps as Finetune/artifacts/oxford_pets/split_coop.csv
# (Yiveen/SyntheticDataFeasibility at 4cddb23; its rows run train, then val, then test, 287,420 bytes: about
# 7,349 rows of ~39 bytes, not counted row by row here).
PETS_COOP = {"train": 2944, "val": 736, "test": 3669}
# The official Oxford-IIIT Pets split, annotations/trainval.txt and test.txt (what torchvision reads).
PETS_OFFICIAL = {"trainval": 3680, "test": 3669}


def test_coop_pets_counts_split_the_official_trainval_80_20_and_keep_its_test():
    assert PETS_COOP["train"] + PETS_COOP["val"] == PETS_OFFICIAL["trainval"]
    assert PETS_COOP["val"] == round(0.2 * PETS_OFFICIAL["trainval"])  # CoOp holds out 20% of train-val
    assert PETS_COOP["test"] == PETS_OFFICIAL["test"]


@pytest.mark.parametrize("form", ["json", "csv"])
def test_fetch_reads_the_coop_split_from_the_dataset_folder(project, tmp_path, form):
    write_pets(tmp_path / "datasets")
    split = write_coop_pets_split(tmp_path / "datasets", form)
    project(dataset={"name": "pets", "root": str(tmp_path / "datasets"), "shots": "all", "split": "coop"})
    run("fetch")
    classes = 3
    counts = {name: len(io.read_csv(f"data/raw/{name}.csv")) for name in ("train", "val", "test")}
    assert counts == {"train": classes * (TRAIN_PER_CLASS - 1), "val": classes, "test": classes * TEST_PER_CLASS}
    assert counts == {name: len(ids) for name, ids in split.items()}
    train = io.read_csv("data/raw/train.csv")
    assert sorted(row["path"].rsplit("/", 1)[1] for row in train) == sorted(f"{i}.jpg" for i in split["train"])
    assert {row["class"] for row in train} == {"Abyssinian", "American Bulldog", "Bengal"}  # the dataset's names
    assert all(row["mask"] for row in train) and not any(row["mask"] for row in io.read_csv("data/raw/val.csv"))
    assert set(io.read_json("metrics/fetch.json")) >= {"train", "val", "test"}


def test_a_number_of_shots_draws_from_the_coop_train_split(project, tmp_path):
    write_pets(tmp_path / "datasets")
    split = write_coop_pets_split(tmp_path / "datasets")
    project(dataset={"name": "pets", "root": str(tmp_path / "datasets"), "shots": 2, "split": "coop"})
    run("fetch")
    names = [row["path"].rsplit("/", 1)[1].removesuffix(".jpg") for row in io.read_csv("data/raw/train.csv")]
    assert len(names) == 6 and set(names) <= set(split["train"])


def test_missing_coop_split_file_says_where_to_get_it(project, tmp_path):
    write_pets(tmp_path / "datasets")
    project(dataset={"name": "pets", "root": str(tmp_path / "datasets"), "split": "coop"})
    result = CliRunner().invoke(app, ["fetch"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "split_zhou_OxfordPets.json" in result.output and "KaiyangZhou/CoOp" in result.output
    assert not (tmp_path / "data" / "raw").exists()


def test_the_world_has_no_coop_split(project):
    project(dataset={"split": "coop"})
    result = CliRunner().invoke(app, ["fetch"])
    assert result.exit_code == 2 and "dataset" in result.output and "official split" in result.output


class FixedLogits(torch.nn.Module):
    """Row i of the batch gets logits[i % len(logits)]."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, images):
        return self.logits[torch.arange(len(images)) % len(self.logits)]


def test_top5_counts_the_label_among_the_five_best(tmp_path):
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    rows = []
    for i, label in enumerate([0, 6, 1]):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
        rows.append(SplitRow(str(tmp_path / f"{i}.png"), None, label, str(label)))
    logits = [[9., 1, 2, 3, 4, 5, 0], [9., 8, 7, 6, 5, 1, 0], [0., 9, 9, 8, 7, 6, 5]]  # last: a tie for the best
    best = evaluation.ranked(FixedLogits(logits), rows, to_tensor, batch_size=8, device=torch.device("cpu"))
    assert [b[0] for b in best] == [0, 0, 1]  # the top-1 prediction is argmax's, ties to the first
    assert evaluation.top_k(rows, best) == round(2 / 3, 6)  # row 1's label is the 7th best
    assert all(len(b) == 5 and len(set(b)) == 5 for b in best)


def sweep(*args):
    result = CliRunner().invoke(app, ["sweep", "paper", *args])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    return [(label.removeprefix("# "), shlex.split(command)) for label, command in zip(lines[::2], lines[1::2])]


def settings(command):
    assert command[:4] == ["dvc", "exp", "run", "--queue"]
    pairs = [command[i + 1] for i, arg in enumerate(command) if arg == "-S"]
    keys = [pair.split("=", 1)[0] for pair in pairs]
    assert len(keys) == len(set(keys))  # every key set once
    return dict(pair.split("=", 1) for pair in pairs)


def test_sweep_paper_queues_the_13_conditions_for_every_seed(monkeypatch):
    monkeypatch.chdir(REPO)
    commands = sweep("--dataset", "pets", "--seeds", "0,1", "--dry-run")
    assert len(commands) == 13 * 2
    seen = {}
    for label, command in commands:
        s = settings(command)
        assert s["dataset.name"] == "pets" and s["dataset.split"] == "coop" and s["dataset.shots"] == "all"
        seen[label] = s
    for seed in ("0", "1"):
        real_only = seen[f"real-only, seed {seed}"]
        assert real_only["mix.synthetic_per_class"] == "0" and real_only["train.seed"] == seed
        for attribute in ("background", "color", "texture"):
            for kind, ratio in (("feasible", "0.0"), ("infeasible", "1.0")):
                for include_real, name in (("false", f"synthetic-{kind}"), ("true", kind)):
                    s = seen[f"{name} {attribute}, seed {seed}"]
                    assert (s["mix.attribute"], s["mix.infeasible_ratio"], s["mix.include_real"],
                            s["mix.synthetic_per_class"], s["train.seed"]) == (attribute, ratio, include_real,
                                                                              "all", seed)
    extra = dict(sweep("--dataset", "pets", "--seeds", "3", "--dry-run", "--zero-shot", "--mixed"))
    assert len(extra) == 13 + 1 + 3
    assert settings(extra["zero-shot, seed 3"])["train.finetune"] == "none"
    assert settings(extra["mixed 0.5 color, seed 3"])["mix.infeasible_ratio"] == "0.5"


def test_sweep_refuses_an_unknown_grid_and_bad_seeds(monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["sweep", "table", "--dataset", "pets", "--dry-run"])
    assert result.exit_code == 1 and "no grid 'table'; grids: paper" in result.output
    result = CliRunner().invoke(app, ["sweep", "paper", "--dataset", "pets", "--seeds", "0,x", "--dry-run"])
    assert result.exit_code == 1 and "--seeds" in result.output


def test_pets_profile_shows_the_official_regime(monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["profile", "pets", "--dry-run"])
    assert result.exit_code == 0
    s = dict(arg.split("=", 1) for arg in shlex.split(result.output)[3:] if "=" in arg)
    assert (s["dataset.shots"], s["dataset.split"], s["mix.synthetic_per_class"], s["edit.per_image"]) == \
        ("all", "coop", "all", "5")


def eval_run(seed: int, mix: dict, finetune: str = "full", top1: float = 0.5):
    """An eval run as the report reads it back from MLflow (every param a string), without predictions."""
    import yaml

    from varireal.mixing import condition_and_attribute
    from varireal.params import validate
    from varireal_pipeline import eval_runs
    from varireal_pipeline.profiles import merged

    raw = merged(yaml.safe_load((REPO / "params.yaml").read_text()), {"mix": mix, "train": {"seed": seed,
                                                                                            "finetune": finetune}})
    settings = validate(raw, "test")
    condition, attribute = condition_and_attribute(settings.mix, trained=finetune != "none")
    return eval_runs.EvalRun(params={k: str(v) for k, v in settings.flat().items()}, condition=condition,
                             attribute=attribute, dataset="world", top1=top1 + seed / 100, top5=0.9,
                             per_class={}, predictions=None, experiment="test", git_commit="", synthetic_md5="",
                             checkpoint_md5="", run_id=f"{condition}-{attribute}-{seed}")


def test_report_compares_synthetic_only_with_its_real_plus_synthetic_counterpart_and_with_each_other(tmp_path):
    from varireal_pipeline.report import grouping, rendering

    runs = []
    for seed in (0, 1):
        runs += [eval_run(seed, {"synthetic_per_class": 0}), eval_run(seed, {"synthetic_per_class": 0}, "none"),
                 eval_run(seed, {"synthetic_per_class": 0, "attribute": "color", "infeasible_ratio": 1.0}, "none")]
        for include_real in (True, False):
            for ratio in (0.0, 1.0):
                runs.append(eval_run(seed, {"attribute": "color", "infeasible_ratio": ratio,
                                            "include_real": include_real}))
    report = grouping.build(runs, [], resamples=100)
    labels = [g.label for g in report.groups]
    assert labels == ["zero-shot", "real-only", "feasible", "infeasible", "synthetic-feasible",
                      "synthetic-infeasible"]  # zero-shot runs differ only in unused params: one group
    assert len(report.groups[0].runs) == 2
    pairs = {(c.group.label, c.reference.label) for c in report.comparisons}
    assert pairs == {("feasible", "real-only"), ("infeasible", "real-only"), ("infeasible", "feasible"),
                     ("synthetic-feasible", "real-only"), ("synthetic-infeasible", "real-only"),
                     ("synthetic-feasible", "feasible"), ("synthetic-infeasible", "infeasible"),
                     ("synthetic-infeasible", "synthetic-feasible")}
    lines = {(p["attribute"], p["infeasible_ratio"]) for p in rendering.ratio_points(report)}
    assert lines == {("zero-shot", 0.0), ("zero-shot", 1.0), ("real-only", 0.0), ("real-only", 1.0),
                     ("color", 0.0), ("color", 1.0), ("color (synthetic only)", 0.0), ("color (synthetic only)", 1.0)}
    assert "| synthetic-infeasible |" in rendering.markdown(report)
    rendering.plot(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0


@pytest.mark.parametrize("section, key, value, allowed", [
    ("dataset", "shots", 0, "a whole number of at least 1, or all"),
    ("dataset", "shots", "most", "a whole number of at least 1, or all"),
    ("mix", "synthetic_per_class", -1, "a whole number of at least 0, or all"),
    ("dataset", "split", "zhou", "'official' or 'coop'"),
    ("train", "finetune", "frozen", "'lora', 'full' or 'none'"),
])
def test_bad_regime_params_are_one_line_and_exit_2(project, section, key, value, allowed):
    project(**{section: {key: value}})
    result = CliRunner().invoke(app, ["fetch"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert f"{section}.{key}={value!r}" in result.output and allowed in result.output


@pytest.mark.parametrize("form", ["json", "csv"])
def test_coop_split_tells_apart_files_of_the_same_name_by_folder(tmp_path, form):
    """Stanford Cars: cars_train/00001.jpg and cars_test/00001.jpg; CoOp names the folder, the paper's csv
    writes train/ and test/."""
    from varireal.datasets import sources

    folder = tmp_path / "stanford_cars"
    folder.mkdir()
    train = [sources.Sample(folder / "cars_train" / f"0000{i}.jpg", i % 2, "a car") for i in range(1, 4)]
    test = [sources.Sample(folder / "cars_test" / f"0000{i}.jpg", i % 2, "a car") for i in range(1, 3)]
    official = sources.Source(["A", "B"], train, test)
    if form == "json":
        entry = lambda s: [f"{s.path.parent.name}/{s.path.name}", s.label, "x"]  # noqa: E731
        (folder / "split_zhou_StanfordCars.json").write_text(json.dumps(
            {"train": [entry(s) for s in train[:2]], "val": [entry(train[2])], "test": [entry(s) for s in test]}))
    else:
        rows = [f"train,train/{s.path.name}" for s in train[:2]] + [f"val,train/{train[2].path.name}"]
        (folder / "split_coop.csv").write_text("split,filename\n" + "\n".join(
            rows + [f"test,test/{s.path.name}" for s in test]) + "\n")
    coop = sources.coop_from_file("stanford_cars", "split_zhou_StanfordCars.json")(tmp_path, False, official)
    assert (coop.train, coop.val, coop.test) == (train[:2], [train[2]], test)
