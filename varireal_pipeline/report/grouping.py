"""Replicate groups of eval runs and the comparisons between them, by the params the runs were made with.

Every eval run is one replicate. Runs that differ only in `train.seed` (and `tracking.*`) form a group;
each group is compared with its real-only baseline and, within an attribute, feasible with infeasible
and every mixed ratio with both pure sets; a synthetic-only group (mix.include_real false) also with its
real + synthetic counterpart. Zero-shot groups (train.finetune none) are shown, not compared. The statistics
of a comparison are varireal.statistics'; the report's comparisons are one family for Holm's correction, and
each gets its verdict from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from varireal import mixing, statistics
from varireal.statistics import PairedDifference, Replicate

from varireal_pipeline.eval_runs import EvalRun

CONDITION_ORDER = {name: i for i, name in enumerate(mixing.CONDITIONS)}

# Replicates share every param but these.
NOT_GROUPED = ("train.seed", "tracking.")
# A real-only model never sees a synthetic image, so these cannot change it: real-only runs from
# sweeps that differ only here are replicates of one baseline.
UNUSED_BY_REAL_ONLY = ("prompt.", "edit.", "score.", "mix.attribute", "mix.infeasible_ratio",
                       "mix.filter_score", "mix.filter_min")
# A zero-shot model is the pretrained one: only these params can change it.
USED_BY_ZERO_SHOT = ("dataset.", "pretrain.", "train.model", "train.pretrained", "train.finetune")
# A condition's baseline is the real-only group that agrees on everything outside the synthetic set.
SYNTHETIC_SETUP = ("prompt.", "edit.", "score.", "mix.")
# Shown in their own columns, so never in the `setting` column.
LABEL_KEYS = ("dataset.name", "mix.attribute", "mix.infeasible_ratio")


def _starts(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in prefixes)


def replicate(run: EvalRun) -> Replicate:
    """The numbers statistics needs of one eval run."""
    if run.predictions is None:
        return Replicate(run.top1)
    return Replicate(run.top1, tuple(p.path for p in run.predictions),
                     np.array([p.correct for p in run.predictions]))


@dataclass
class Group:
    key: tuple[tuple[str, str], ...]
    dataset: str
    attribute: str
    condition: str
    infeasible_ratio: float | None  # None for real-only and zero-shot
    runs: dict[str, EvalRun] = field(default_factory=dict)  # by train.seed
    setting: str = ""  # params that tell this group apart from another one with the same label

    @property
    def label(self) -> str:
        if mixing.synthetic_kind(self.condition) == "mixed":
            return f"{self.condition} {self.infeasible_ratio:g}"
        return self.condition

    @property
    def replicates(self) -> dict[str, Replicate]:
        return {seed: replicate(run) for seed, run in self.runs.items()}

    @property
    def mean(self) -> float:
        return statistics.mean([run.top1 for run in self.runs.values()])

    @property
    def std(self) -> float:
        """Sample std over seeds; NaN with a single seed."""
        return statistics.sample_std([run.top1 for run in self.runs.values()])


@dataclass
class Comparison:
    """`group` against `reference`: result.difference = group - reference, paired per seed."""

    group: Group
    reference: Group
    result: PairedDifference
    holm_p: float | None = None  # the paired t-test's p, Holm-adjusted over the report's comparisons
    verdict: str = statistics.NOT_ENOUGH_SEEDS
    seeds_for_equivalence: float | None = None  # paired seeds TOST needs at the planned power if the truth is 0
    seeds_for_difference: float | None = None  # ... the Holm-corrected t-test needs if the truth is the observed Δ

    @property
    def seeds_needed(self) -> float | None:
        """Paired seeds that would make the comparison decisive one way or the other: the fewer of the two."""
        if self.seeds_for_equivalence is None:
            return None
        return min(self.seeds_for_equivalence, self.seeds_for_difference)


@dataclass
class Report:
    runs_read: int
    groups: list[Group]
    comparisons: list[Comparison]
    notes: list[str]
    resamples: int
    seed: int
    margin: float  # equivalence margin, a fraction (0.01 = 1 point)

    def verdicts(self) -> dict[str, int]:
        """How many comparisons got each verdict."""
        return {name: sum(c.verdict == name for c in self.comparisons) for name in statistics.VERDICTS}


def _group_key(run: EvalRun) -> tuple[tuple[str, str], ...]:
    if run.condition == mixing.ZERO_SHOT:
        return tuple(sorted((k, v) for k, v in run.params.items() if _starts(k, USED_BY_ZERO_SHOT)))
    skip = NOT_GROUPED + (UNUSED_BY_REAL_ONLY if run.condition == mixing.REAL_ONLY else ())
    return tuple(sorted((k, v) for k, v in run.params.items() if not _starts(k, skip)))


def _baseline_key(group: Group) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in group.key if not _starts(k, SYNTHETIC_SETUP))


def _sibling_key(group: Group) -> tuple[tuple[str, str], ...]:
    """Groups with the same sibling key differ only in the infeasible ratio."""
    return tuple((k, v) for k, v in group.key if k != "mix.infeasible_ratio")


def _counterpart_key(group: Group) -> tuple[tuple[str, str], ...]:
    """A synthetic-only group and its real + synthetic counterpart differ only in mix.include_real."""
    return tuple((k, v) for k, v in group.key if k != "mix.include_real")


def group_runs(runs: list[EvalRun]) -> tuple[list[Group], list[str]]:
    """Replicate groups, sorted for the table; notes on duplicate seeds."""
    groups: dict[tuple, Group] = {}
    notes = []
    for run in sorted(runs, key=lambda r: r.start_time, reverse=True):  # newest first: it wins a duplicate
        key = _group_key(run)
        real_only = run.condition in (mixing.REAL_ONLY, mixing.ZERO_SHOT)
        ratio = None if real_only else float(run.params.get("mix.infeasible_ratio", "nan"))
        # From the params, not the run's attribute tag: runs logged before that tag existed group alike.
        attribute = mixing.attribute_of(run.condition, run.params.get("mix.attribute", "?"))
        group = groups.setdefault(key, Group(key, run.params.get("dataset.name", "?"), attribute,
                                             run.condition, ratio))
        if run.seed in group.runs:
            kept = group.runs[run.seed]
            notes.append(f"Runs {kept.run_id} and {run.run_id} share every param including train.seed="
                         f"{run.seed}: kept the newer one, {kept.run_id}.")
            continue
        group.runs[run.seed] = run
    ordered = sorted(groups.values(), key=lambda g: (g.dataset, g.condition not in (mixing.ZERO_SHOT, mixing.REAL_ONLY),
                                                     g.attribute,
                                                     CONDITION_ORDER.get(g.condition, 9),
                                                     g.infeasible_ratio or 0.0, g.key))
    for group in ordered:
        group.runs = dict(sorted(group.runs.items(), key=lambda item: (len(item[0]), item[0])))  # 2 before 10
    _describe_settings(ordered)
    return ordered, notes


def _describe_settings(groups: list[Group]) -> None:
    """Name the params that tell apart groups that would otherwise show the same label."""
    by_label: dict[tuple, list[Group]] = {}
    for group in groups:
        by_label.setdefault((group.dataset, group.attribute, group.label), []).append(group)
    varying: set[str] = set()
    for same in by_label.values():
        if len(same) > 1:
            keys = set().union(*(dict(g.key) for g in same))
            varying |= {k for k in keys if len({dict(g.key).get(k) for g in same}) > 1}
    varying -= set(LABEL_KEYS)
    for group in groups:
        params = dict(group.key)
        group.setting = ", ".join(f"{k}={params[k]}" for k in sorted(varying) if k in params)


def judge(found: list[Comparison], margin: float) -> None:
    """Holm over every comparison with a paired test, then each comparison's verdict and the seeds that would
    decide it: TOST is not corrected, the difference is planned at alpha / (tests in the family)."""
    tested = [c for c in found if c.result.p_value is not None]
    for comparison, adjusted in zip(tested, statistics.holm([c.result.p_value for c in tested])):
        result = comparison.result
        comparison.holm_p = adjusted
        comparison.seeds_for_equivalence = statistics.seeds_for_equivalence(result.sd, margin)
        comparison.seeds_for_difference = statistics.seeds_for_difference(result.difference, result.sd,
                                                                          statistics.ALPHA / len(tested))
    for comparison in found:
        comparison.verdict = statistics.verdict(len(comparison.result.paired_seeds), comparison.holm_p,
                                                comparison.result.tost_p)


def comparisons(groups: list[Group], resamples: int, seed: int, margin: float) -> tuple[list[Comparison], list[str]]:
    """Each condition vs its real-only baseline; feasible vs infeasible; each mixed ratio vs both pure sets."""
    notes = []
    baselines: dict[tuple, list[Group]] = {}
    for group in groups:
        if group.condition == mixing.REAL_ONLY:
            baselines.setdefault(_baseline_key(group), []).append(group)
    siblings: dict[tuple, dict[str, Group]] = {}
    with_real: dict[tuple, Group] = {}
    for group in groups:
        kind = mixing.synthetic_kind(group.condition)
        if kind in ("feasible", "infeasible"):
            siblings.setdefault(_sibling_key(group), {})[kind] = group
        if kind in ("feasible", "mixed", "infeasible") and not mixing.is_synthetic_only(group.condition):
            with_real[_counterpart_key(group)] = group

    def compare(group: Group, reference: Group) -> Comparison:
        return Comparison(group, reference, statistics.paired_difference(group.replicates, reference.replicates,
                                                                         resamples, seed, margin))

    out = []
    for group in groups:
        if group.condition in (mixing.REAL_ONLY, mixing.ZERO_SHOT):
            continue
        candidates = baselines.get(_baseline_key(group), [])
        if candidates:
            baseline = max(candidates, key=lambda g: len(g.runs))  # several only if mix.include_real differs
            out.append(compare(group, baseline))
        else:
            notes.append(f"No real-only baseline with the same dataset and training params for "
                         f"{group.dataset} / {group.attribute} / {group.label}.")
        if mixing.is_synthetic_only(group.condition) and _counterpart_key(group) in with_real:
            out.append(compare(group, with_real[_counterpart_key(group)]))
        pure = siblings.get(_sibling_key(group), {})
        kind = mixing.synthetic_kind(group.condition)
        if kind == "infeasible" and "feasible" in pure:
            out.append(compare(group, pure["feasible"]))
        if kind == "mixed":
            out += [compare(group, pure[name]) for name in ("feasible", "infeasible") if name in pure]
    judge(out, margin)
    return out, notes


def build(runs: list[EvalRun], notes: list[str], resamples: int = 2000, seed: int = 0,
          margin: float = 0.01) -> Report:
    groups, group_notes = group_runs(runs)
    found, compare_notes = comparisons(groups, resamples, seed, margin)
    return Report(len(runs), groups, found, notes + group_notes + compare_notes, resamples, seed, margin)
