"""Select the training set: real shots plus synthetic edits at an exact infeasible ratio.

Rounding rule: each class gets round_half_up(infeasible_ratio * synthetic_per_class) infeasible
edits and the rest feasible ones, so the realised ratio is exact whenever that product is whole
(e.g. ratios in steps of 0.025 with 40 per class) and never off by more than 0.5 / synthetic_per_class.
synthetic_per_class "all" (the paper's regime) takes per class every edit of the one feasibility a pure
mix uses, and for a mixed ratio as many in all as the smaller of the two pools holds.

Score filter: with mix.filter_score set, only edits whose score is at least mix.filter_min are
candidates, before sampling, and train.csv records every score of its synthetic rows (score_*
columns). With filter_score null the scores are not read, so train.csv is what it was before scores
existed, byte for byte.
"""

from __future__ import annotations

import math

import numpy as np

from varireal.errors import StageError
from varireal.params import MixParams, ParamError
from varireal.records import ManifestRow, MixedRow, ScoreRow, SplitRow


def candidates(manifest: list[ManifestRow], scores: list[ScoreRow] | None = None) -> list[MixedRow]:
    """Every edit of the pool as a training-set row, with its scores (matched by path) when given."""
    if scores is None:
        return [MixedRow.synthetic(m) for m in manifest]
    by_path = {row.path: row.scores for row in scores}
    if missing := [m.path for m in manifest if m.path not in by_path]:
        raise StageError(f"the scores have no row for {missing[0]} ({len(missing)} edits unscored); "
                         "run `varireal score` after `varireal edit`")
    return [MixedRow.synthetic(m, by_path[m.path]) for m in manifest]


def passes_filter(edit: MixedRow, mix: MixParams) -> bool:
    if not mix.filter_score:
        return True
    value = edit.scores.get(mix.filter_score)
    if value is None:
        raise ParamError("mix.filter_score", mix.filter_score,
                         "a score the score stage computed; vqa needs score.vqa_model")
    return value >= mix.filter_min


def _of_class(edits: list[MixedRow], class_name: str, feasibility: str, mix: MixParams) -> list[MixedRow]:
    return [e for e in edits if e.class_name == class_name and e.feasibility == feasibility
            and mix.attribute in ("all", e.attribute)]


def filter_counts(real: list[SplitRow], edits: list[MixedRow], mix: MixParams) -> dict:
    """How many candidate edits (of the mix's classes and attribute) the score filter kept and removed."""
    classes = dict.fromkeys(r.class_name for r in real)
    counts = {"score": mix.filter_score, "min": mix.filter_min, "kept": {}, "removed": {}}
    for feasibility in ("feasible", "infeasible"):
        chosen = [e for name in classes for e in _of_class(edits, name, feasibility, mix)]
        kept = sum(passes_filter(e, mix) for e in chosen)
        counts["kept"][feasibility], counts["removed"][feasibility] = kept, len(chosen) - kept
    return counts


REAL_ONLY = "real-only"
ZERO_SHOT = "zero-shot"  # the pretrained model, not fine-tuned (train.finetune: none)
SYNTHETIC_ONLY = "synthetic-"  # prefix of the conditions trained without real images (mix.include_real: false)
# Every condition, in the order the report shows them.
CONDITIONS = (ZERO_SHOT, REAL_ONLY, "feasible", "mixed", "infeasible",
              SYNTHETIC_ONLY + "feasible", SYNTHETIC_ONLY + "mixed", SYNTHETIC_ONLY + "infeasible")
# What a real-only or zero-shot run shows as its attribute: it trains on no edit, so mix.attribute means nothing to it.
NO_ATTRIBUTE = "none"


def condition(mix: MixParams, trained: bool = True) -> str:
    """The experimental condition, as MLflow's `condition` tag shows it: zero-shot (trained False: the
    pretrained model as is), real-only, feasible | mixed | infeasible (real + synthetic), or
    synthetic-feasible | synthetic-mixed | synthetic-infeasible (synthetic only)."""
    if not trained:
        return ZERO_SHOT
    if mix.synthetic_per_class == 0:
        return REAL_ONLY
    if mix.infeasible_ratio == 0:
        name = "feasible"
    elif mix.infeasible_ratio == 1:
        name = "infeasible"
    else:
        name = "mixed"
    return name if mix.include_real else SYNTHETIC_ONLY + name


def synthetic_kind(condition_name: str) -> str:
    """feasible | mixed | infeasible for a condition with synthetic images, with or without real ones."""
    return condition_name.removeprefix(SYNTHETIC_ONLY)


def is_synthetic_only(condition_name: str) -> bool:
    return condition_name.startswith(SYNTHETIC_ONLY)


def attribute_of(condition_name: str, mix_attribute: str) -> str:
    """The attribute a run of condition_name trained on, given its mix.attribute param."""
    return NO_ATTRIBUTE if condition_name in (REAL_ONLY, ZERO_SHOT) else mix_attribute


def condition_and_attribute(mix: MixParams, trained: bool = True) -> tuple[str, str]:
    """The condition and attribute a run defines, as eval.json and MLflow's tags show them; trained is
    False for the zero-shot model (train.finetune: none)."""
    name = condition(mix, trained)
    return name, attribute_of(name, mix.attribute)


def infeasible_count(infeasible_ratio: float, synthetic_per_class: int) -> int:
    return math.floor(infeasible_ratio * synthetic_per_class + 0.5)


def select(real: list[SplitRow], edits: list[MixedRow], mix: MixParams, seed: int) -> list[MixedRow]:
    """The training set: the real shots (if mix.include_real), then per class the edits sampled from
    edits (the rows `candidates` makes)."""
    rows = []
    if mix.include_real:
        rows += [MixedRow.real(r) for r in real]
    if mix.synthetic_per_class:
        edited = sorted({e.attribute for e in edits})
        if mix.attribute != "all" and mix.attribute not in edited:
            raise ParamError("mix.attribute", mix.attribute, f"one of the edited attributes {edited} or 'all'")
        classes = list(dict.fromkeys(r.class_name for r in real))
        for c, name in enumerate(classes):
            of_class = {f: _of_class(edits, name, f, mix) for f in ("infeasible", "feasible")}
            pools = {f: [e for e in rows_ if passes_filter(e, mix)] for f, rows_ in of_class.items()}
            total = mix.synthetic_per_class
            if total == "all":
                used = [f for f, share in (("infeasible", mix.infeasible_ratio), ("feasible", 1 - mix.infeasible_ratio))
                        if share > 0]
                total = min(len(pools[f]) for f in used)
            n_infeasible = infeasible_count(mix.infeasible_ratio, total)
            wanted = {"infeasible": n_infeasible, "feasible": total - n_infeasible}
            for f, (feasibility, count) in enumerate(wanted.items()):
                pool = pools[feasibility]
                if len(pool) < count <= len(of_class[feasibility]):
                    raise StageError(
                        f"class {name}: only {len(pool)} of {len(of_class[feasibility])} {feasibility} edits have "
                        f"{mix.filter_score} >= {mix.filter_min} and the mix needs {count}; lower mix.filter_min "
                        f"or mix.synthetic_per_class, or edit more (edit.per_image)")
                if count > len(pool):
                    raise ParamError("mix.synthetic_per_class", mix.synthetic_per_class,
                                     f"class {name} has only {len(pool)} {feasibility} edits of attribute "
                                     f"{mix.attribute}; ask for fewer or edit more (edit.per_image)")
                picks = np.random.default_rng([seed, c, f]).choice(len(pool), count, replace=False)
                rows += [pool[i] for i in sorted(picks)]
    if not rows:
        raise ParamError("mix.include_real", mix.include_real, "true when mix.synthetic_per_class is 0")
    return rows
