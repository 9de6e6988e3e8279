"""`varireal report` on an MLflow store of synthetic eval runs whose per-image predictions the test chooses."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from varireal import io
from varireal.mixing import condition_and_attribute
from varireal.params import validate
from varireal_pipeline import eval_runs, tracking

from conftest import REPO

IMAGES = 200
SEEDS = (0, 1, 2)
# (attribute, infeasible ratio or None for real-only) -> chance that a test image is classified right
ACCURACY = {
    ("none", None): 0.60,
    ("background", 0.0): 0.62, ("background", 0.5): 0.61, ("background", 1.0): 0.60,
    ("texture", 0.0): 0.70, ("texture", 0.5): 0.55, ("texture", 1.0): 0.35,
}


# Per condition (in ACCURACY's order) and seed: images right beyond the seed's shared offset. Each sums to 0,
# so a condition's mean is exactly its accuracy, and no two are equal, so every per-seed difference varies.
JITTER = [(-2, 0, 2), (0, 2, -2), (2, -2, 0), (-2, 2, 0), (2, 0, -2), (0, -2, 2), (-1, 2, -1)]


def correct_pattern(attribute, ratio, seed):
    """A seed-and-condition-specific shuffle of the images of which exactly accuracy + (seed - 1) x 1% +
    JITTER / 200 are right: means and mean differences are exact; per-seed differences spread by about 1 point."""
    index = list(ACCURACY).index((attribute, ratio))
    rng = np.random.default_rng([index, seed])
    correct = np.zeros(IMAGES, dtype=bool)
    right = round(ACCURACY[(attribute, ratio)] * IMAGES) + 2 * (seed - 1) + JITTER[index][seed]
    correct[rng.permutation(IMAGES)[:right]] = True
    return correct


def log_eval_run(attribute, ratio, seed, correct, folder: Path, **params):
    """One run logged by eval's own writer, into the store params.yaml of the working folder names."""
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["train"]["seed"] = seed
    if ratio is None:
        raw["mix"].update(synthetic_per_class=0)
    else:
        raw["mix"].update(attribute=attribute, infeasible_ratio=ratio)
    for key, value in params.items():
        section, name = key.split(".")
        raw[section][name] = value
    settings = validate(raw, "test")
    condition, attribute = condition_and_attribute(settings.mix)
    folder.mkdir(parents=True, exist_ok=True)
    run = eval_runs.EvalRun(
        params=settings.flat(), condition=condition, attribute=attribute, dataset=settings.dataset.name,
        top1=float(correct.mean()), per_class={"cat": float(correct.mean()), "dog": None},
        predictions=tuple(eval_runs.Prediction(f"test/{i:03d}.png", "cat", "cat" if right else "dog")
                          for i, right in enumerate(correct)),
        experiment="test", git_commit="0" * 40, synthetic_md5="unrecorded", checkpoint_md5="unrecorded")
    return eval_runs.record(run, folder, settings.tracking.uri, settings.tracking.experiment)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An initialised MLflow SQLite store; creating its tables takes seconds, copying it none."""
    import mlflow

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="module")
def logged_store(tmp_path_factory, empty_store):
    """21 eval runs (7 groups x 3 seeds) and one failed run, logged once; artifacts stay in this folder.
    Returns the store's path and {(attribute, ratio): [per-image correctness per seed]}."""
    import mlflow

    folder = tmp_path_factory.mktemp("logged-store")
    shutil.copy(empty_store, folder / "mlflow.db")
    (folder / "params.yaml").write_text((REPO / "params.yaml").read_text())
    patterns = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for (attribute, ratio) in ACCURACY:
            patterns[(attribute, ratio)] = []
            for seed in SEEDS:
                correct = correct_pattern(attribute, ratio, seed)
                patterns[(attribute, ratio)].append(correct)
                # A real-only model never sees edits: a different edit param still makes it a replicate.
                extra = {"edit.per_image": 3} if ratio is None and seed == 2 else {}
                log_eval_run(attribute, ratio, seed, correct, folder / "logged" / f"{attribute}-{ratio}-{seed}",
                             **extra)
        with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("varireal").experiment_id):
            mlflow.set_tags({"condition": "feasible", "attribute": "color"})
            mlflow.log_metric("top1", 0.99)
            mlflow.end_run(status="FAILED")
    return folder / "mlflow.db", patterns


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working folder with the repository's params.yaml, the one the logged runs were made with."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "params.yaml", "params.yaml")


@pytest.fixture
def store(project, logged_store):
    """The logged runs, in a copy of the store in this test's folder."""
    shutil.copy(logged_store[0], "mlflow.db")
    return logged_store[1]


@pytest.fixture
def empty_project(project, empty_store):
    shutil.copy(empty_store, "mlflow.db")


def report(*args):
    from varireal_pipeline.cli import app

    return CliRunner().invoke(app, ["report", "--bootstrap", "1000", *args])


def table():
    return io.read_csv("reports/report.csv")


def row(rows, attribute, condition, reference=""):
    (found,) = [r for r in rows if r["attribute"] == attribute and r["condition"] == condition
                and r["reference"] == reference]
    return found


def exact_mcnemar(b, c):
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n)


def test_eval_run_is_logged_in_the_contract_layout_and_read_back(empty_project, tmp_path):
    """The names outside tools rely on (DESIGN.md "Contracts"), spelled out here on purpose, and the reader
    the report uses gives back what eval's writer logged."""
    import mlflow

    correct = correct_pattern("texture", 0.5, 1)
    run_id = log_eval_run("texture", 0.5, 1, correct, tmp_path / "logged")
    (logged,) = mlflow.search_runs(experiment_names=["varireal"], output_format="list")
    tags, metrics = logged.data.tags, logged.data.metrics
    assert (tags["condition"], tags["attribute"], tags["dataset"]) == ("mixed", "texture", "world")
    assert tags["dvc.experiment"] == "test" and tags["git.commit"] == tags["mlflow.source.git.commit"] == "0" * 40
    assert tags["dvc.synthetic_md5"] == tags["dvc.checkpoint_md5"] == "unrecorded"
    assert logged.data.params["mix.infeasible_ratio"] == "0.5" and logged.data.params["train.seed"] == "1"
    assert metrics == {"top1": correct.mean(), "top1.cat": correct.mean()}  # no metric for a class without images
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)} == {"eval.json", "predictions.csv"}
    assert io.read_json(tmp_path / "logged" / "eval.json") == {
        "top1": correct.mean(), "condition": "mixed", "attribute": "texture", "test_images": IMAGES,
        "per_class": {"cat": correct.mean(), "dog": None}}

    run = eval_runs.read(logged, mlflow.get_tracking_uri(), tmp_path / "downloads")
    assert (run.run_id, run.condition, run.attribute, run.seed, run.top1) == (run_id, "mixed", "texture", "1",
                                                                               correct.mean())
    assert run.per_class == {"cat": correct.mean()}
    assert [p.correct for p in run.predictions] == list(correct)
    assert run.predictions[3] == ("test/003.png", "cat", "cat" if correct[3] else "dog")


def test_report_table_and_statistics(store):
    import mlflow

    result = report()
    assert result.exit_code == 0, result.output
    rows = table()

    # Means and stds over seeds, against numpy on the chosen patterns.
    for (attribute, ratio), patterns in store.items():
        condition = {None: "real-only", 0.0: "feasible", 1.0: "infeasible"}.get(ratio) or f"mixed {ratio:g}"
        accuracies = np.array([p.mean() for p in patterns])
        for r in (r for r in rows if r["attribute"] == attribute and r["condition"] == condition):
            assert r["n_seeds"] == "3" and r["seeds"] == "0 1 2"
            assert float(r["top1_mean_pct"]) == pytest.approx(100 * accuracies.mean(), abs=1e-3)
            assert float(r["top1_std_pct"]) == pytest.approx(100 * accuracies.std(ddof=1), abs=1e-3)

    # One real-only row; each pure set vs real-only, infeasible vs feasible, mixed vs real-only and both pure sets.
    assert len([r for r in rows if r["condition"] == "real-only"]) == 1
    assert len(rows) == 1 + 2 * (1 + 2 + 3)
    for attribute in ("background", "texture"):
        assert {r["reference"] for r in rows if r["attribute"] == attribute and r["condition"] == "mixed 0.5"} == \
            {"real-only", "feasible", "infeasible"}

    # Seed-level inference against scipy and statsmodels computed here: the paired t-test over seeds, Holm by
    # hand over the report's 12 comparisons, TOST, and McNemar per seed by the exact binomial by hand.
    from scipy.stats import ttest_rel
    from statsmodels.stats.power import TTestPower
    from statsmodels.stats.weightstats import ttost_paired

    keys = {"real-only": ("none", None), "feasible": (None, 0.0), "mixed 0.5": (None, 0.5), "infeasible": (None, 1.0)}

    def accuracies(attribute, condition):
        key = keys[condition] if condition == "real-only" else (attribute, keys[condition][1])
        return store[key], np.array([p.mean() for p in store[key]])

    compared = [r for r in rows if r["reference"]]
    assert len(compared) == 12
    p_values = sorted((ttest_rel(accuracies(r["attribute"], r["condition"])[1],
                                 accuracies(r["attribute"], r["reference"])[1]).pvalue, i) for i, r in enumerate(compared))
    holm, running = {}, 0.0
    for rank, (p, i) in enumerate(p_values):
        running = max(running, min(1.0, (len(p_values) - rank) * p))
        holm[i] = running
    for i, r in enumerate(compared):
        (ours, ours_top1), (theirs, theirs_top1) = accuracies(r["attribute"], r["condition"]), \
            accuracies(r["attribute"], r["reference"])
        differences = ours_top1 - theirs_top1
        assert float(r["diff_pct"]) == pytest.approx(100 * differences.mean(), abs=1e-3)
        assert r["n_paired_seeds"] == "3" and r["paired_seeds"] == "0 1 2"
        assert [float(d) for d in r["diff_per_seed_pct"].split()] == pytest.approx(100 * differences, abs=1e-3)
        assert float(r["p_paired_t"]) == pytest.approx(ttest_rel(ours_top1, theirs_top1).pvalue, rel=1e-4)
        assert float(r["p_holm"]) == pytest.approx(holm[i], rel=1e-4)
        assert float(r["tost_p"]) == pytest.approx(ttost_paired(ours_top1, theirs_top1, -0.01, 0.01)[0], rel=1e-4)
        assert float(r["margin_pct"]) == 1.0
        half = 4.302653 * differences.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
        assert float(r["ci_low_pct"]) == pytest.approx(100 * (differences.mean() - half), abs=1e-3)
        assert float(r["ci_high_pct"]) == pytest.approx(100 * (differences.mean() + half), abs=1e-3)
        expected = "different" if holm[i] < 0.05 else "inconclusive"  # TOST cannot pass at 1 point with 3 seeds
        assert r["verdict"] == expected
        assert (r["seeds_needed"] != "") == (expected == "inconclusive")
        # The seeds the plan asks for: the t-test at 0.05 / 12 (the strictest Holm step), TOST at 0.05.
        sd = differences.std(ddof=1)
        assert float(r["sd_diff_pct"]) == pytest.approx(100 * sd, abs=1e-3)
        if expected == "inconclusive" and abs(differences.mean()) > 1e-9:
            effect, needed = abs(differences.mean()) / sd, int(r["seeds_for_difference"])
            short, enough = TTestPower().power(effect, np.array([needed - 1, needed]), 0.05 / 12)
            assert enough >= 0.8 > short or not math.isfinite(short + enough)  # statsmodels' NaN: checked elsewhere
        # At least the normal approximation's (z_0.95 + z_0.9)^2 (sd / margin)^2; t asks a little more.
        assert int(r["seeds_for_equivalence"]) >= ((1.645 + 1.282) * sd / 0.01) ** 2
        b = [int(np.sum(t & ~o)) for o, t in zip(ours, theirs)]
        c = [int(np.sum(~t & o)) for o, t in zip(ours, theirs)]
        assert r["mcnemar_bc_per_seed"] == " ".join(f"{x}/{y}" for x, y in zip(b, c))
        assert [float(p) for p in r["mcnemar_p_per_seed"].split()] == \
            pytest.approx([exact_mcnemar(x, y) for x, y in zip(b, c)], rel=1e-4)
        # The two-level bootstrap interval holds the observed difference and lies within the seeds' range
        # widened by the test-image noise.
        low, high = float(r["bootstrap_low_pct"]) / 100, float(r["bootstrap_high_pct"]) / 100
        assert low <= differences.mean() <= high
        per_image = np.mean(ours, axis=0) - np.mean(theirs, axis=0)
        image_noise = 2 * 1.96 * per_image.std() / math.sqrt(IMAGES)
        assert high - low < differences.max() - differences.min() + 2 * image_noise

    # 25 to 35 points are `different`; 0 to 2 points with 3 seeds are not, and not equivalent either.
    assert row(rows, "texture", "infeasible", "real-only")["verdict"] == "different"
    assert row(rows, "texture", "infeasible", "feasible")["verdict"] == "different"
    assert row(rows, "background", "infeasible", "real-only")["verdict"] == "inconclusive"
    assert row(rows, "background", "feasible", "real-only")["verdict"] == "inconclusive"

    markdown = Path("reports/report.md").read_text()
    assert "21 eval run(s) read" in markdown and "Holm" in markdown and "TOST" in markdown
    assert "Skipped 0 report run(s), 1 unfinished run(s)" in markdown
    std = 100 * np.array([p.mean() for p in store[("texture", 1.0)]]).std(ddof=1)
    assert f"| texture | infeasible | 3 | 35.00 ± {std:.2f} | real-only | -25.00 |" in markdown
    assert "| **different** |" in markdown and "| **inconclusive** |" in markdown
    assert "Equivalence within ±1 pp needs" in markdown and "more `train.seed` values" in markdown

    points = {(p["attribute"], float(p["infeasible_ratio"])): p for p in io.read_csv("reports/top1_vs_ratio.csv")}
    assert set(points) == {(a, r) for a, r in ACCURACY if r is not None} | {("real-only", 0.0), ("real-only", 1.0)}
    assert float(points[("texture", 0.5)]["top1_mean"]) == pytest.approx(55.0)
    with Image.open("reports/top1_vs_ratio.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 300

    with Image.open("reports/differences.png") as image:
        image.verify()

    # The report is a run of its own, without a condition, holding the five files and the verdicts' counts;
    # the next report skips it.
    (logged,) = mlflow.search_runs(experiment_names=["varireal"], filter_string="tags.report = 'true'",
                                   output_format="list")
    assert "condition" not in logged.data.tags
    metrics = logged.data.metrics
    assert metrics["runs_read"] == 21 and metrics["groups"] == 7 and metrics["comparisons"] == 12
    verdicts = [r["verdict"] for r in compared]
    assert (metrics["different"], metrics["inconclusive"], metrics["equivalent"], metrics["not_enough_seeds"]) == \
        (verdicts.count("different"), verdicts.count("inconclusive"), 0, 0)
    assert logged.data.params["report.margin"] == "1.0"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(logged.info.run_id)}
    assert artifacts == {"report.md", "report.csv", "top1_vs_ratio.png", "top1_vs_ratio.csv", "differences.png", "gaps.png"}

    again = report("--out", "second")
    assert again.exit_code == 0, again.output
    assert "21 eval run(s) read" in Path("second/report.md").read_text()
    assert "Skipped 1 report run(s)" in Path("second/report.md").read_text()
    assert io.read_csv("second/report.csv") == rows  # same bootstrap seed, same numbers


def test_duplicate_seed_keeps_the_newest_run(store, tmp_path):
    better = np.ones(IMAGES, dtype=bool)
    newest = log_eval_run("texture", 1.0, 1, better, tmp_path / "again")
    result = report()
    assert result.exit_code == 0, result.output
    r = row(table(), "texture", "infeasible", "real-only")
    accuracies = [store[("texture", 1.0)][0].mean(), 1.0, store[("texture", 1.0)][2].mean()]
    assert r["n_seeds"] == "3"
    assert float(r["top1_mean_pct"]) == pytest.approx(100 * np.mean(accuracies), abs=1e-3)
    notes = Path("reports/report.md").read_text()
    assert f"kept the newer one, {newest}" in notes and "train.seed=1" in notes


def test_unmatched_seeds_give_an_unpaired_difference(empty_project, tmp_path):
    baseline = correct_pattern("none", None, 0)
    log_eval_run("none", None, 0, baseline, tmp_path / "a")
    log_eval_run("color", 0.0, 5, np.ones(IMAGES, dtype=bool), tmp_path / "b")
    result = report()
    assert result.exit_code == 0, result.output
    (r,) = [r for r in table() if r["reference"] == "real-only"]
    assert r["n_paired_seeds"] == "0" and r["p_paired_t"] == r["mcnemar_p_per_seed"] == ""
    assert r["verdict"] == "not enough seeds" and "no seed in common" in r["note"]
    assert float(r["diff_pct"]) == pytest.approx(100 * (1 - baseline.mean()))
    assert "(unpaired)" in Path("reports/report.md").read_text()


def test_no_runs_is_one_line_and_exit_1(project):
    result = report()  # no store at all: none is created either
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert result.output.startswith("error: report: no finished eval runs in MLflow experiment 'varireal'")
    assert not Path("reports").exists() and not Path("mlflow.db").exists()


def test_another_experiment_without_runs(store):
    result = report("--experiment", "elsewhere")
    assert result.exit_code == 1
    assert "no finished eval runs in MLflow experiment 'elsewhere'" in result.output


def test_dvc_plots_show_draws_the_report_plot(tmp_path, monkeypatch):
    """The top-level plot of dvc.yaml and its template in .dvc/plots: one line per attribute."""
    import json

    dvc = Path(sys.executable).with_name("dvc")
    monkeypatch.chdir(tmp_path)
    subprocess.run([dvc, "init", "--no-scm", "-q"], check=True)
    shutil.copy(REPO / "dvc.yaml", "dvc.yaml")
    shutil.copy(REPO / "params.yaml", "params.yaml")  # dvc.yaml's commands are templated from it
    shutil.copytree(REPO / ".dvc/plots", ".dvc/plots", dirs_exist_ok=True)
    io.write_csv("reports/top1_vs_ratio.csv", [
        {"dataset": "world", "setting": "", "attribute": attribute, "infeasible_ratio": ratio,
         "top1_mean": 50 + ratio, "top1_std": 1.0, "n": 3} for attribute in ("color", "texture") for ratio in (0.0, 1.0)])
    shown = subprocess.run([dvc, "plots", "show", "--json"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(shown.stdout)
    # The stages' plots have no files here and are reported as errors; this one must have none.
    assert not [error for error in answer.get("errors", []) if "top1_vs_ratio" in error["name"]]
    (plot,) = answer["data"]["reports/top1_vs_ratio.csv"]
    spec = plot["content"]
    assert spec["encoding"]["color"]["field"] == "attribute"
    assert spec["encoding"]["x"]["field"] == "infeasible_ratio"
    assert spec["layer"][0]["encoding"]["y"]["field"] == "top1_mean"
    assert {(row["attribute"], row["infeasible_ratio"]) for row in spec["data"]["values"]} == \
        {("color", "0.0"), ("color", "1.0"), ("texture", "0.0"), ("texture", "1.0")}


def test_groups_that_differ_in_a_param_are_told_apart(empty_project, tmp_path):
    log_eval_run("none", None, 0, correct_pattern("none", None, 0), tmp_path / "a")
    log_eval_run("color", 0.0, 0, np.ones(IMAGES, dtype=bool), tmp_path / "b")
    log_eval_run("color", 0.0, 0, np.zeros(IMAGES, dtype=bool), tmp_path / "c", **{"train.steps": 300})
    result = report()
    assert result.exit_code == 0, result.output
    feasible = {r["setting"]: r for r in table() if r["condition"] == "feasible"}
    assert set(feasible) == {"train.steps=150", "train.steps=300"}
    assert feasible["train.steps=150"]["reference"] == "real-only"
    assert feasible["train.steps=300"]["reference"] == "" and feasible["train.steps=300"]["top1_mean_pct"] == "0.0000"
    markdown = Path("reports/report.md").read_text()
    assert "| setting |" in markdown and "No real-only baseline" in markdown


def test_run_without_predictions_counts_only_in_means(empty_project, tmp_path):
    log_eval_run("none", None, 0, correct_pattern("none", None, 0), tmp_path / "a")
    run_id = log_eval_run("color", 1.0, 0, np.ones(IMAGES, dtype=bool), tmp_path / "b")
    import mlflow

    mlflow.MlflowClient().delete_run(run_id)  # the store keeps deleted runs; search_runs skips them
    settings = validate(yaml.safe_load(Path("params.yaml").read_text()) | {"mix": {"infeasible_ratio": 1.0}}, "test")
    tracking.log_run(settings.tracking.uri, "varireal", "old eval", settings.flat(), {"top1": 1.0},
                     {"condition": "infeasible", "attribute": "all", "dataset": "world"}, [])
    result = report()
    assert result.exit_code == 0, result.output
    (r,) = [r for r in table() if r["condition"] == "infeasible"]
    assert r["diff_pct"] and r["mcnemar_p_per_seed"] == "" and "predictions missing" in r["note"]
    assert r["verdict"] == "not enough seeds"  # one seed; with more, the top1 metrics alone give a verdict
    assert "1 run(s) have no readable predictions.csv" in Path("reports/report.md").read_text()


def test_margin_sets_what_equivalent_means(store):
    """At ±5 points, 3 seeds that agree within ~1 point show equivalence; the margin is logged."""
    import mlflow

    result = report("--margin", "5")
    assert result.exit_code == 0, result.output
    rows = table()
    equivalent = row(rows, "background", "infeasible", "real-only")
    assert equivalent["verdict"] == "equivalent within ±5 pp" and float(equivalent["tost_p"]) < 0.05
    assert equivalent["seeds_needed"] == "" and float(equivalent["margin_pct"]) == 5.0
    assert row(rows, "texture", "infeasible", "real-only")["verdict"] == "different"
    (logged,) = mlflow.search_runs(experiment_names=["varireal"], filter_string="tags.report = 'true'",
                                   output_format="list")
    assert logged.data.params["report.margin"] == "5.0"
    assert logged.data.metrics["equivalent"] == sum(r["verdict"].startswith("equivalent") for r in rows) > 0
    assert "equivalent within +-5 pp" in result.output

    assert report("--margin", "0").exit_code == 2  # a margin must be positive


def test_feasibility_gap_per_setting_is_the_infeasible_minus_feasible_difference(empty_project, tmp_path):
    """A study: two fine-tuning strengths, each with feasible and infeasible runs over two seeds. gaps.png's
    points are the infeasible-vs-feasible comparisons of each setting, in the settings' numeric order."""
    from varireal_pipeline.report import grouping, rendering

    # lr 0.001: infeasible 20 points below feasible; lr 0.0001: 2 points. 200 images, so exact fractions.
    right = {(0.001, 0.0): 140, (0.001, 1.0): 100, (0.0001, 0.0): 140, (0.0001, 1.0): 136}
    for (lr, ratio), count in right.items():
        for seed in (0, 1):
            correct = np.zeros(IMAGES, dtype=bool)
            correct[np.random.default_rng([seed, int(lr * 1e4), int(ratio)]).permutation(IMAGES)[:count + seed]] = True
            log_eval_run("color", ratio, seed, correct, tmp_path / f"{lr}-{ratio}-{seed}", **{"train.lr": lr})
    result = report()
    assert result.exit_code == 0, result.output
    with Image.open("reports/gaps.png") as image:
        image.verify()

    from varireal_pipeline.report.reading import read_runs

    runs, notes = read_runs(f"sqlite:///{Path('mlflow.db').resolve()}", "varireal")
    gaps = rendering.feasibility_gaps(grouping.build(runs, notes, 200, 0, 0.01))
    by_setting = {c.group.setting: round(100 * c.result.difference, 6) for c in gaps}
    assert by_setting == {"train.lr=0.001": -20.0, "train.lr=0.0001": -2.0}
    assert sorted(by_setting, key=rendering._setting_order) == ["train.lr=0.0001", "train.lr=0.001"]
