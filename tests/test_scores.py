"""Edit scores: each score checked on a case built by hand, the score stage end to end, the mix filter."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

from varireal import edit_plan, editing, io, records, render, scoring
from varireal_pipeline.cli import app
from varireal.params import ScoreParams

from test_stages import run


def item(attribute: str, value: str) -> edit_plan.EditItem:
    return edit_plan.EditItem(path="e.png", source="s.png", mask="m.png", label=0, class_name="trefoil",
                            attribute=attribute, feasibility="feasible", value=value, seed=7)


def test_identity_kept_is_exact():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True  # 64 object pixels, 192 around them
    editor = editing.CompositeEditor(texture_strength=0.8)
    for attribute, value in [("background", next(iter(render.SCENES))), ("color", next(iter(render.COLORS))),
                             ("texture", next(iter(render.TEXTURES)))]:
        edited = editor(source, mask, item(attribute, value))
        assert not np.array_equal(edited, source)  # the edit changed something ...
        assert scoring.identity_kept(source, edited, mask, attribute) == 1.0  # ... but nothing it should keep

    changed = source.copy()
    changed[0, :6, 1] ^= 1  # 6 background pixels, one channel each
    changed[5, 5] ^= 1  # 1 object pixel
    assert scoring.identity_kept(source, changed, mask, "color") == pytest.approx(1 - 6 / 192)
    assert scoring.identity_kept(source, changed, mask, "background") == pytest.approx(1 - 1 / 64)
    with pytest.raises(ValueError, match="does not match"):
        scoring.identity_kept(source, changed[:8], mask, "color")


def test_presence_is_the_softmax_probability_of_the_intended_value():
    values = ["red", "blue", "green"]
    prompts = {"tre_foil": {"color": {"feasible": ["red", "blue"], "infeasible": ["green"]}}}
    asked = []

    def encode_texts(texts):  # one axis per value named in the text
        asked.extend(texts)
        return torch.stack([torch.eye(3)[next(i for i, v in enumerate(values) if v in t)] for t in texts])

    red_image = torch.tensor([[1.0, 0.0, 0.0]])
    rows = [records.ManifestRow("e.png", "s.png", "tre_foil", 0, "color", "feasible", value, 0, "composite")
            for value in ("red", "blue")]
    got = scoring.presence(torch.cat([red_image, red_image]), rows, prompts, encode_texts, logit_scale=5.0)
    right = math.exp(5) / (math.exp(5) + 2)
    assert got.tolist() == pytest.approx([right, 1 / (math.exp(5) + 2)])
    assert asked == ["a photo of a red tre foil.", "a photo of a blue tre foil.", "a photo of a green tre foil."]


def test_feasibility_is_the_own_class_softmax_over_nearest_real_photos():
    real = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]), dim=-1)
    real_labels = [0, 0, 1, 1]
    edits = torch.tensor([[0.8, 0.6], [0.8, 0.6]])
    # The first edit's source is real photo 0, the second's photo 1: each is left out of its own row.
    nearest = scoring.nearest_per_class(edits, real, real_labels, 3, sources=[0, 1])
    assert nearest[0].tolist() == pytest.approx([0.96, 0.6, -1.0])  # photo 1 for class 0, photo 2 for class 1
    assert nearest[1].tolist() == pytest.approx([0.8, 0.6, -1.0])  # photo 0 for class 0
    for row, label in ((0, 0), (1, 1)):
        logits = scoring.FEASIBILITY_SCALE * nearest[row].numpy()
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert scoring.feasibility(nearest[row:row + 1], [label]).item() == pytest.approx(expected[label], rel=1e-5)


def test_parse_yes_no():
    assert scoring.parse_yes_no(" Yes, it is.") is True
    assert scoring.parse_yes_no("no") is False
    assert scoring.parse_yes_no("maybe yes") is None
    assert scoring.parse_yes_no("") is None


@pytest.fixture
def scored(project, tiny_clip_config):
    """The small world project through fetch, prompt, edit and score, with the tiny CLIP for the scores."""
    project(score={"model": str(tiny_clip_config), "batch_size": 16, "threads": 1})
    run("fetch", "prompt", "edit", "pretrain", "score")
    return project


def test_score_stage_writes_scores_aligned_with_the_manifest(scored):
    manifest = io.read_csv("data/synthetic/manifest.csv")
    scores = io.read_csv("data/scores/scores.csv")
    assert [s["path"] for s in scores] == [m["path"] for m in manifest]
    assert list(scores[0]) == records.SCORE_FIELDS
    for row in scores:
        assert 0 <= float(row["feasibility"]) <= 1 and 0 < float(row["presence"]) < 1  # probabilities
        assert float(row["identity_kept"]) == 1.0  # the composite editor keeps what it should, bit for bit
        assert -1 <= float(row["identity_clip"]) <= 1.0 + 1e-6
        assert row["vqa"] == ""  # score.vqa_model is null
        assert all(len(row[k].split(".")[-1]) <= 6 for k in records.SCORE_NAMES if row[k])

    # The reported AUROC is the Mann-Whitney U of feasible over infeasible scores, / (n1 * n2).
    report = io.read_json("metrics/scores.json")
    assert report["images"] == len(manifest)
    for attribute in ("background", "color", "texture", "all"):
        chosen = [(m, float(s["feasibility"])) for m, s in zip(manifest, scores) if attribute in ("all", m["attribute"])]
        feasible = [x for m, x in chosen if m["feasibility"] == "feasible"]
        infeasible = [x for m, x in chosen if m["feasibility"] == "infeasible"]
        u = mannwhitneyu(feasible, infeasible).statistic
        assert report["auroc_feasibility"][attribute] == pytest.approx(u / (len(feasible) * len(infeasible)), abs=1e-6)
        if attribute != "all":
            mean = report["mean"][attribute]["infeasible"]["feasibility"]
            assert mean == pytest.approx(np.mean(infeasible), abs=1e-6)
            assert set(report["mean"][attribute]["feasible"]) == {"feasibility", "presence", "identity_kept",
                                                                  "identity_clip"}

    first = Path("data/scores/scores.csv").read_bytes()
    run("score")
    assert Path("data/scores/scores.csv").read_bytes() == first  # byte-stable


def test_identity_clip_of_an_image_with_itself_is_one_and_vqa_fills_its_column(scored, tiny_clip_config, tiny_vlm):
    real = records.read_split("data/raw/train.csv")
    manifest = records.read_manifest("data/synthetic/manifest.csv")[:2]
    manifest[0] = dataclasses.replace(manifest[0], path=manifest[0].source)  # an "edit" that is its own source
    params = ScoreParams(model=str(tiny_clip_config), pretrained="models/world-clip/model.safetensors", threads=1,
                         vqa_model=str(tiny_vlm))  # the world-CLIP the stage scored with
    values = records.read_prompts("data/prompts.json").values
    rows = scoring.score_pool(manifest, real, values, io.read_json("data/raw/classes.json"), params, seed=0)
    assert rows[0].scores.identity_clip == pytest.approx(1.0, abs=1e-5) and rows[0].scores.identity_kept == 1.0
    assert rows[1].scores.identity_clip < 0.9999
    assert [r.scores.vqa for r in rows] == [1.0, 1.0]  # the yes-sayer on two feasible edits
    # Scored alone, an edit gets the numbers the stage gave it among all the others.
    staged = records.read_scores("data/scores/scores.csv")[1].scores
    for name in ("presence", "identity_kept", "identity_clip"):
        assert rows[1].scores.get(name) == pytest.approx(staged.get(name), abs=2e-6)


def test_mix_filter_keeps_only_edits_at_or_above_the_threshold(scored):
    baseline_csv = Path("data/mixed/train.csv")
    run("mix")
    unfiltered = (baseline_csv.read_bytes(), Path("data/mixed/summary.json").read_bytes())
    assert baseline_csv.read_text().splitlines()[0] == ",".join(records.MIXED_FIELDS)
    assert "filter" not in io.read_json("data/mixed/summary.json")

    manifest = io.read_csv("data/synthetic/manifest.csv")
    score = {s["path"]: float(s["feasibility"]) for s in io.read_csv("data/scores/scores.csv")}
    needed = 4  # mix.synthetic_per_class in the small params, all feasible
    # The highest threshold that still leaves every class `needed` feasible edits.
    threshold = min(sorted((score[m["path"]] for m in manifest if m["class"] == c and m["feasibility"] == "feasible"),
                           reverse=True)[needed - 1] for c in {m["class"] for m in manifest})
    scored(mix={"filter_score": "feasibility", "filter_min": threshold})
    run("mix")
    rows = io.read_csv("data/mixed/train.csv")
    synthetic = [r for r in rows if r["source"] == "synthetic"]
    assert len(synthetic) == needed * len({m["class"] for m in manifest})
    assert all(float(r["score_feasibility"]) >= threshold for r in synthetic)
    assert all(float(r["score_feasibility"]) == score[r["path"]] for r in synthetic)
    assert all(r["score_feasibility"] == "" for r in rows if r["source"] == "real")
    kept = sum(score[m["path"]] >= threshold for m in manifest if m["feasibility"] == "feasible")
    summary = io.read_json("data/mixed/summary.json")["filter"]
    assert summary["kept"]["feasible"] == kept
    assert summary["removed"]["feasible"] == sum(m["feasibility"] == "feasible" for m in manifest) - kept > 0

    # Too high a threshold: one line naming the class, the score and what to change.
    scored(mix={"filter_score": "feasibility", "filter_min": 1.0})
    result = CliRunner().invoke(app, ["mix"])
    assert result.exit_code == 1
    assert "feasibility >= 1.0" in result.output and "lower mix.filter_min" in result.output
    # No VQA scores to filter on.
    scored(mix={"filter_score": "vqa", "filter_min": 0.5})
    result = CliRunner().invoke(app, ["mix"])
    assert result.exit_code == 2 and "score.vqa_model" in result.output

    # filter_score null: the scores are not read, and the output is the unfiltered one byte for byte.
    scored(mix={"filter_score": None})
    Path("data/scores/scores.csv").unlink()
    run("mix")
    assert (baseline_csv.read_bytes(), Path("data/mixed/summary.json").read_bytes()) == unfiltered


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    import tiny_models

    return tiny_models.vlm(tmp_path_factory.mktemp("tiny-vlm"), answer="yes")


def test_vqa_judge_scores_the_answers_a_real_model_generates(tiny_vlm, tmp_path):
    for name, size in (("a.png", (40, 40)), ("b.png", (24, 48))):
        Image.new("RGB", size, (200, 30, 30)).save(tmp_path / name)
    rows = [records.ManifestRow(str(tmp_path / "a.png"), "s.png", "tre_foil", 0, "color", "feasible", "red", 0, "composite"),
            records.ManifestRow(str(tmp_path / "b.png"), "s.png", "tre_foil", 0, "color", "infeasible", "neon green", 0,
                                "composite")]
    judge = scoring.VqaJudge(str(tiny_vlm), torch.device("cpu"))
    # It says yes to everything: right twice for a feasible edit, once for an infeasible one.
    assert judge.score(rows, batch_size=2) == [1.0, 0.5]
