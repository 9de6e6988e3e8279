"""Select the training set: real shots plus synthetic edits at an exact infeasible ratio.

Rounding rule: each class gets round_half_up(infeasible_ratio * synthetic_per_class) infeasible
edits and the rest feasible ones, so the realised ratio is exact whenever that product is whole
(e.g. ratios in steps of 0.025 with 40 per class) and never off by more than 0.5 / synthetic_per_class.

Score filter: with mix.filter_score set, only edits whose score is at least mix.filter_min are
candidates, before sampling, and train.csv records every score of its synthetic rows (score_*
columns). With filter_score null the scores are not read, so train.csv is what it was before scores
existed, byte for byte.
"""

from __future__ import annotations

import math
from typing import get_args

import numpy as np

from varireal.errors import StageError
from varireal.params import MixParams, ParamError, ScoreName

TRAIN_FIELDS = ["path", "label", "class", "source", "attribute", "feasibility", "value"]
# "score_" keeps the feasibility score apart from the feasibility label.
SCORE_COLUMNS = [f"score_{name}" for name in get_args(ScoreName)]


def train_fields(mix: MixParams) -> list[str]:
    """The columns of train.csv: the scores only when the mix filtered on one."""
    return TRAIN_FIELDS + SCORE_COLUMNS if mix.filter_score else TRAIN_FIELDS


def join_scores(manifest: list[dict], scores: list[dict]) -> list[dict]:
    """Manifest rows with score_<name> columns from the score stage's rows, matched by path."""
    by_path = {row["path"]: row for row in scores}
    if missing := [m["path"] for m in manifest if m["path"] not in by_path]:
        raise StageError(f"the scores have no row for {missing[0]} ({len(missing)} edits unscored); "
                         "run `varireal score` after `varireal edit`")
    return [{**m, **{f"score_{name}": by_path[m["path"]][name] for name in get_args(ScoreName)}} for m in manifest]


def passes_filter(row: dict, mix: MixParams) -> bool:
    if not mix.filter_score:
        return True
    value = row[f"score_{mix.filter_score}"]
    if value == "":
        raise ParamError("mix.filter_score", mix.filter_score,
                         "a score the score stage computed; vqa needs score.vqa_model")
    return float(value) >= mix.filter_min


def _candidates(manifest: list[dict], class_name: str, feasibility: str, mix: MixParams) -> list[dict]:
    return [m for m in manifest if m["class"] == class_name and m["feasibility"] == feasibility
            and mix.attribute in ("all", m["attribute"])]


def filter_counts(real: list[dict], manifest: list[dict], mix: MixParams) -> dict:
    """How many candidate edits (of the mix's classes and attribute) the score filter kept and removed."""
    classes = dict.fromkeys(r["class"] for r in real)
    counts = {"score": mix.filter_score, "min": mix.filter_min, "kept": {}, "removed": {}}
    for feasibility in ("feasible", "infeasible"):
        candidates = [m for name in classes for m in _candidates(manifest, name, feasibility, mix)]
        kept = sum(passes_filter(m, mix) for m in candidates)
        counts["kept"][feasibility], counts["removed"][feasibility] = kept, len(candidates) - kept
    return counts


REAL_ONLY = "real-only"
# What a real-only run shows as its attribute: it trains on no edit, so mix.attribute means nothing to it.
NO_ATTRIBUTE = "none"


def condition(mix: MixParams) -> str:
    """The experimental condition a mix defines, as MLflow's `condition` tag shows it."""
    if mix.synthetic_per_class == 0:
        return REAL_ONLY
    if mix.infeasible_ratio == 0:
        return "feasible"
    if mix.infeasible_ratio == 1:
        return "infeasible"
    return "mixed"


def attribute_of(condition_name: str, mix_attribute: str) -> str:
    """The attribute a run of condition_name trained on, given its mix.attribute param."""
    return NO_ATTRIBUTE if condition_name == REAL_ONLY else mix_attribute


def condition_and_attribute(mix: MixParams) -> tuple[str, str]:
    """The condition and attribute a mix defines, as eval.json and MLflow's tags show them."""
    name = condition(mix)
    return name, attribute_of(name, mix.attribute)


def infeasible_count(infeasible_ratio: float, synthetic_per_class: int) -> int:
    return math.floor(infeasible_ratio * synthetic_per_class + 0.5)


def select(real: list[dict], manifest: list[dict], mix: MixParams, seed: int) -> list[dict]:
    rows = []
    if mix.include_real:
        rows += [{**{k: r[k] for k in ("path", "label", "class")}, "source": "real",
                  "attribute": "", "feasibility": "", "value": ""} for r in real]
    if mix.synthetic_per_class:
        edited = sorted({m["attribute"] for m in manifest})
        if mix.attribute != "all" and mix.attribute not in edited:
            raise ParamError("mix.attribute", mix.attribute, f"one of the edited attributes {edited} or 'all'")
        n_infeasible = infeasible_count(mix.infeasible_ratio, mix.synthetic_per_class)
        wanted = {"infeasible": n_infeasible, "feasible": mix.synthetic_per_class - n_infeasible}
        classes = list(dict.fromkeys(r["class"] for r in real))
        for c, name in enumerate(classes):
            for f, (feasibility, count) in enumerate(wanted.items()):
                candidates = _candidates(manifest, name, feasibility, mix)
                pool = [m for m in candidates if passes_filter(m, mix)]
                if len(pool) < count <= len(candidates):
                    raise StageError(
                        f"class {name}: only {len(pool)} of {len(candidates)} {feasibility} edits have "
                        f"{mix.filter_score} >= {mix.filter_min} and the mix needs {count}; lower mix.filter_min "
                        f"or mix.synthetic_per_class, or edit more (edit.per_image)")
                if count > len(pool):
                    raise ParamError("mix.synthetic_per_class", mix.synthetic_per_class,
                                     f"class {name} has only {len(pool)} {feasibility} edits of attribute "
                                     f"{mix.attribute}; ask for fewer or edit more (edit.per_image)")
                picks = np.random.default_rng([seed, c, f]).choice(len(pool), count, replace=False)
                rows += [{**{k: pool[i][k] for k in train_fields(mix) if k != "source"}, "source": "synthetic"}
                         for i in sorted(picks)]
    if not rows:
        raise ParamError("mix.include_real", mix.include_real, "true when mix.synthetic_per_class is 0")
    return rows
