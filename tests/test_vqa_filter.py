"""edit.filter, the official VQA filter: each edit is judged by a vision-language model on its attribute's
four questions; one scoring below the threshold is edited again with a new seed, up to `cycles` attempts,
and the last attempt is kept. Through a tiny random LLaVA-NeXT (tests/tiny_vlm.py) that answers "no" to
everything: a feasible edit scores 0 (it expects four yeses) and is redone every time, an infeasible one
scores 0.5 (the two feasibility questions expect no) and passes at once."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tiny_vlm
from launching import launch
from test_resume import files, kill_inside
from test_stages import run
from varireal import attributes, io, records, vqa_filter
from varireal.edit_plan import EditItem
from varireal.records import MANIFEST_FIELDS
from varireal_pipeline.cli import app

CYCLES = 3
WORK = Path("data/.synthetic.partial")
# One shot of each of the ten species, one edit per attribute and feasibility: 60 edits, half of them feasible.
SMALL = {"dataset": {"shots": 1}}
PER_IMAGE = {"per_image": 1}
EDITS = 60


@pytest.fixture(scope="module")
def says_no(tmp_path_factory) -> Path:
    return tiny_vlm.llava_next(tmp_path_factory.mktemp("llava-next-no"), answer="no")


def filtered(project, model: Path, **edit):
    return project(**SMALL, edit={**PER_IMAGE, "workers": 1, "filter": {"model": str(model), "cycles": CYCLES, "device": "cpu",
                                                          "batch_size": 8}, **edit})


# The library, with a judge injected -----------------------------------------------------------------------


class Answers:
    """A judge that answers every question with one word and counts what it was asked."""

    def __init__(self, answer: bool | None):
        self.answer, self.asked = answer, []

    def answers(self, images, questions):
        self.asked += questions
        return [self.answer] * len(questions)


def item(feasibility: str, k: int, attribute: str = "color") -> EditItem:
    return EditItem(f"out/{feasibility}_{k}.png", "src.png", "mask.png", 0, "blue_whale", attribute, feasibility,
                    "purple", seed=100 + k)


def test_questions_are_the_official_four_with_their_expected_answers():
    for name in attributes.names():
        asked = vqa_filter.questions(item("feasible", 0, name))
        assert len(asked) == 4 and all("{" not in text for text, _ in asked)
        assert [wanted for _, wanted in asked] == [True] * 4
        assert [wanted for _, wanted in vqa_filter.questions(item("infeasible", 0, name))] == [True, True, False, False]
    assert vqa_filter.questions(item("feasible", 0))[0][0] == "Is the blue whale in the image purple?"


def test_attempt_seeds_start_at_the_plan_seed_and_derive_from_it_alone():
    assert vqa_filter.attempt_seed(7, 1) == 7
    later = [vqa_filter.attempt_seed(7, n) for n in (2, 3)]
    assert len({7, *later}) == 3 and later == [vqa_filter.attempt_seed(7, n) for n in (2, 3)]


def test_failed_items_are_edited_again_with_new_seeds_until_the_last_cycle(tmp_path):
    jobs = [(item(f, k), tmp_path / f"{f}_{k}.png", tmp_path / "verdicts" / f"{f}_{k}.json")
            for f in ("feasible", "infeasible") for k in range(3)]
    edited: list[tuple[str, int]] = []

    def edit(batch):
        for it, path in batch:
            edited.append((it.feasibility, it.seed))
            io.write_image_atomic(path, np.full((8, 8, 3), it.seed % 256, np.uint8))

    judge = Answers(False)
    vqa_filter.edit_and_judge(jobs, edit, judge, lambda todo: [todo[i:i + 2] for i in range(0, len(todo), 2)],
                              0.5, CYCLES, 5)
    feasible_seeds = sorted(seed for f, seed in edited if f == "feasible")
    assert feasible_seeds == sorted(vqa_filter.attempt_seed(100 + k, n) for k in range(3) for n in range(1, CYCLES + 1))
    assert sorted(seed for f, seed in edited if f == "infeasible") == [100, 101, 102]  # 0.5: passed at once
    assert len(judge.asked) == 4 * (3 * CYCLES + 3)
    for it, path, verdict in jobs:
        want = [0.0] * CYCLES if it.feasibility == "feasible" else [0.5]
        assert vqa_filter.read_verdict(verdict) == want
        # The image kept is the last attempt's.
        last = vqa_filter.attempt_seed(it.seed, len(want))
        assert int(np.asarray(io.open_rgb(path))[0, 0, 0]) == last % 256


def test_an_answer_neither_yes_nor_no_counts_as_wrong(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    assert vqa_filter.score(Answers(None), [image], [item("feasible", 0)], 3) == [0.0]
    assert vqa_filter.score(Answers(True), [image, image], [item("feasible", 0), item("infeasible", 1)], 3) == [1.0, 0.5]


def test_summary_counts_from_the_kept_attempts():
    assert vqa_filter.summary([1, 1, 2, 3, 3], [1.0, 0.5, 0.75, 0.5, 0.25], 0.5, 3) == {
        "judged": 5, "attempts": 10, "passed_first_cycle": 2, "regenerated_per_cycle": {"2": 3, "3": 2},
        "failed_all_cycles_kept": 1}


# The stage, through the tiny LLaVA-NeXT -------------------------------------------------------------------


def test_edit_with_the_filter_redoes_failed_edits_and_records_it(project, says_no):
    filtered(project, says_no)
    run("fetch", "prompt", "edit")
    rows = records.read_manifest("data/synthetic/manifest.csv")
    header = Path("data/synthetic/manifest.csv").read_text().splitlines()[0]
    assert header == ",".join(MANIFEST_FIELDS + ["filter_cycle", "filter_score"])
    assert len(rows) == EDITS
    for row in rows:
        expected = (CYCLES, 0.0) if row.feasibility == "feasible" else (1, 0.5)
        assert (row.filter_cycle, row.filter_score) == expected, row
    metrics = io.read_json("metrics/edit.json")
    half = EDITS // 2
    assert metrics["filter"] == {"judged": EDITS, "attempts": half * CYCLES + half, "passed_first_cycle": half,
                                 "regenerated_per_cycle": {"2": half, "3": half}, "failed_all_cycles_kept": half}
    first = files(Path("data/synthetic")), Path("metrics/edit.json").read_bytes()

    # The kept feasible images are the last attempts': not the unfiltered pool's first ones.
    unfiltered_pool = Path("unfiltered")
    project(**SMALL, edit={**PER_IMAGE, "workers": 1})
    run("edit")
    shutil.copytree("data/synthetic", unfiltered_pool)
    plain = files(unfiltered_pool)
    same = {row.path: first[0][name] == plain[name]
            for row in rows for name in [Path(row.path).relative_to("data/synthetic").as_posix()]}
    assert all(same[row.path] for row in rows if row.feasibility == "infeasible")
    # A background or colour edit depends on its seed (a world texture at 32 px may not).
    assert not any(same[row.path] for row in rows if row.feasibility == "feasible" and row.attribute != "texture")

    # Determinism: the same bytes again, from scratch.
    filtered(project, says_no)
    run("edit")
    assert (files(Path("data/synthetic")), Path("metrics/edit.json").read_bytes()) == first


def test_filter_off_leaves_the_manifest_and_metrics_as_they_were(project):
    project(**SMALL, edit=PER_IMAGE)
    run("fetch", "prompt", "edit")
    assert Path("data/synthetic/manifest.csv").read_text().splitlines()[0] == ",".join(MANIFEST_FIELDS)
    assert set(io.read_json("metrics/edit.json")) == {"planned", "written", "skipped_missing_mask",
                                                       "out_of_memory_halvings"}


@pytest.mark.slow  # tens of seconds: make test's 6-minute budget; CI runs it (make test-slow)
def test_a_killed_filtered_edit_resumes_reusing_its_verdicts(project, says_no, monkeypatch):
    filtered(project, says_no)
    run("fetch", "prompt", "edit")
    reference = files(Path("data/synthetic")), Path("metrics/edit.json").read_bytes()
    shutil.rmtree("data/synthetic")

    # Killed at the 5th batch judged (of 15 first attempts, 4 edits each): the infeasible ones are final.
    kill_inside("varireal.vqa_filter", "score", 5)
    verdicts = {p: p.read_bytes() for p in (WORK / "verdicts").rglob("*.json")}
    final = {p for p, data in verdicts.items()
             if vqa_filter.is_final(vqa_filter.read_verdict(p), 0.5, CYCLES)}
    assert final and len(verdicts) < EDITS

    judged: list[str] = []
    score = vqa_filter.score
    monkeypatch.setattr(vqa_filter, "score",
                        lambda judge, images, items, size: judged.extend(i.path for i in items) or score(judge, images, items, size))
    run("edit")
    assert (files(Path("data/synthetic")), Path("metrics/edit.json").read_bytes()) == reference
    judged_again = {Path(p).relative_to("data/synthetic").with_suffix(".json").as_posix() for p in judged}
    assert not judged_again & {p.relative_to(WORK / "verdicts").as_posix() for p in final}
    assert len(judged) < EDITS // 2 * (CYCLES + 1)


@pytest.mark.slow  # tens of seconds of 2-process launches or a second DVC run: `make test-slow`, which CI runs
def test_two_processes_write_what_one_filtered_process_writes(project, says_no):
    filtered(project, says_no)
    run("fetch", "prompt", "edit")
    reference = files(Path("data/synthetic")), Path("metrics/edit.json").read_bytes()
    shutil.rmtree("data/synthetic")
    process = launch("edit", 2, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output[-3000:]
    assert (files(Path("data/synthetic")), Path("metrics/edit.json").read_bytes()) == reference


@pytest.mark.parametrize(("setting", "key"), [({"threshold": 1.5}, "edit.filter.threshold"),
                                               ({"cycles": 0}, "edit.filter.cycles"),
                                               ({"modle": "x"}, "edit.filter.modle")])
def test_bad_filter_params_are_one_line(project, setting, key):
    path = project(edit={"filter": setting})
    result = CliRunner().invoke(app, ["edit", "--params", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.output


def test_a_missing_filter_model_is_one_line(project, tmp_path):
    project(**SMALL, edit={**PER_IMAGE, "filter": {"model": str(tmp_path / "no-such-model"), "device": "cpu"}})
    run("fetch", "prompt")
    result = CliRunner().invoke(app, ["edit"])
    assert result.exit_code != 0
    assert "edit.filter.model" in result.output and "no-such-model" in result.output
