"""The official VQA filter of the edits (edit.filter): judge each edit, edit the failed ones again.

A vision-language model (the paper's: LLaVA-1.6-Mistral-7B) answers the four yes/no questions of the
edit's attribute (attributes.AttributeSpec.vqa_questions, the official wording). Two ask whether the
value is there (expected: yes); two whether it is feasible (expected: yes for a feasible edit, no for
an infeasible one). The score is the share of expected answers; an answer that is neither yes nor no
counts as wrong. An edit scoring at least `threshold` is kept; otherwise it is edited again with a new
seed, up to `cycles` attempts in all, and the last attempt is kept whatever its score, as the official
pipeline does (`top_score >= 0.5 or cycles_spent > 2`).

Attempt n of an item is edited with attempt_seed(item.seed, n): the item's own seed first, then seeds
derived from it and n alone, so the kept image depends on neither the order, the batch nor the process.

Verdicts (the scores of an item's attempts so far) are saved one JSON file per item, each written
whole after its attempt was judged, so a killed run goes on where it stopped and processes sharing a
work folder never write the same file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from varireal import attributes, io
from varireal.edit_plan import EditItem
from varireal.errors import StageError

DECIMALS = 6


class Judge(Protocol):
    """Answers yes/no questions about images (scoring.VqaJudge): True, False, or None for anything else."""

    def answers(self, images: list, questions: list[str]) -> list[bool | None]: ...


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of an item's attempt (1 = the first, the plan's seed): a later one derives from both."""
    if attempt == 1:
        return seed
    return int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def questions(item: EditItem) -> list[tuple[str, bool]]:
    """The item's four questions, each with the answer a good edit gets (True: yes)."""
    spec = attributes.get(item.attribute)
    if not spec.vqa_questions:
        raise StageError(f"edit.filter: attribute {item.attribute!r} has no VQA questions (vqa_questions in its "
                         f"registry entry); set edit.filter.model: null or give it some")
    cls = item.class_name.replace("_", " ")
    feasible = item.feasibility == "feasible"
    return [(text.format(cls=cls, value=item.value), feasible if about_feasibility else True)
            for text, about_feasibility in spec.vqa_questions]


def score(judge: Judge, images: Sequence, items: Sequence[EditItem], batch_size: int) -> list[float]:
    """Per item: the share of its questions answered as expected, asked batch_size questions at a time."""
    asked, expected, owner = [], [], []
    for index, (image, item) in enumerate(zip(images, items)):
        for text, wanted in questions(item):
            asked.append((image, text))
            expected.append(wanted)
            owner.append(index)
    answers: list[bool | None] = []
    for start in range(0, len(asked), batch_size):
        chunk = asked[start:start + batch_size]
        answers += judge.answers([image for image, _ in chunk], [text for _, text in chunk])
    hits, counts = [0] * len(items), [0] * len(items)
    for index, answer, wanted in zip(owner, answers, expected):
        hits[index] += answer is wanted
        counts[index] += 1
    return [round(hit / count, DECIMALS) for hit, count in zip(hits, counts)]


def is_final(scores: list[float], threshold: float, cycles: int) -> bool:
    """Whether an item with these attempt scores is done: its last attempt passed, or it had every attempt."""
    return bool(scores) and (scores[-1] >= threshold or len(scores) >= cycles)


def verdict_path(folder: Path, relative: Path) -> Path:
    return folder / relative.with_suffix(".json")


def read_verdict(path: Path) -> list[float]:
    """The scores of an item's judged attempts, in order; none when no attempt was judged yet."""
    if not path.is_file():
        return []
    return [float(s) for s in io.read_json(path)["scores"]]


def edit_and_judge(jobs: list[tuple[EditItem, Path, Path]], edit: Callable[[list[tuple[EditItem, Path]]], None],
                   judge: Judge, batches: Callable[[list], list[list]], threshold: float, cycles: int,
                   batch_size: int, done: Callable[[int], None] = lambda n: None) -> None:
    """Edit and judge (item, image path, verdict path) jobs until each is final.

    A job's saved verdict is where it goes on: after n judged attempts (none passed), attempt n + 1 is
    edited (again, if a kill came between its image and its verdict: the same bytes). edit(batch of
    (item with the attempt's seed, image path)) writes the images; batches splits (item, path) jobs
    into edit batches. done(n) is told when n more jobs become final."""
    scores = {path: read_verdict(verdict) for _, path, verdict in jobs}
    for path, so_far in scores.items():
        if is_final(so_far, threshold, cycles):  # final, but its image is gone: start it again
            scores[path] = []
    verdicts = {path: verdict for _, path, verdict in jobs}
    for attempt in range(1, cycles + 1):
        todo = [(item, path) for item, path, _ in jobs
                if len(scores[path]) == attempt - 1 and not is_final(scores[path], threshold, cycles)]
        for batch in batches(todo):
            edit([(dataclasses.replace(item, seed=attempt_seed(item.seed, attempt)), path) for item, path in batch])
            images = [io.open_rgb(path) for _, path in batch]
            judged = score(judge, images, [item for item, _ in batch], batch_size)
            finished = 0
            for (_, path), value in zip(batch, judged):
                scores[path].append(value)
                io.write_json(verdicts[path], {"scores": scores[path]})
                finished += is_final(scores[path], threshold, cycles)
            done(finished)


def summary(cycles_kept: Sequence[int], scores_kept: Sequence[float], threshold: float, cycles: int) -> dict:
    """metrics/edit.json's filter counts, from each item's kept attempt (its number and score)."""
    return {
        "judged": len(cycles_kept),
        "attempts": int(sum(cycles_kept)),
        "passed_first_cycle": sum(1 for c, s in zip(cycles_kept, scores_kept) if c == 1 and s >= threshold),
        "regenerated_per_cycle": {str(c): sum(1 for kept in cycles_kept if kept >= c) for c in range(2, cycles + 1)},
        "failed_all_cycles_kept": sum(1 for s in scores_kept if s < threshold),
    }
