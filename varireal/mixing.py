"""Select the training set: real shots plus synthetic edits at an exact infeasible ratio.

Rounding rule: each class gets round_half_up(infeasible_ratio * synthetic_per_class) infeasible
edits and the rest feasible ones, so the realised ratio is exact whenever that product is whole
(e.g. ratios in steps of 0.025 with 40 per class) and never off by more than 0.5 / synthetic_per_class.
"""

from __future__ import annotations

import math

import numpy as np

from varireal.params import MixParams, ParamError

TRAIN_FIELDS = ["path", "label", "class", "source", "attribute", "feasibility", "value"]


def condition(mix: MixParams) -> str:
    """The experimental condition a mix defines, as MLflow's `condition` tag shows it."""
    if mix.synthetic_per_class == 0:
        return "real-only"
    if mix.infeasible_ratio == 0:
        return "feasible"
    if mix.infeasible_ratio == 1:
        return "infeasible"
    return "mixed"


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
                pool = [m for m in manifest if m["class"] == name and m["feasibility"] == feasibility
                        and mix.attribute in ("all", m["attribute"])]
                if count > len(pool):
                    raise ParamError("mix.synthetic_per_class", mix.synthetic_per_class,
                                     f"class {name} has only {len(pool)} {feasibility} edits of attribute "
                                     f"{mix.attribute}; ask for fewer or edit more (edit.per_image)")
                picks = np.random.default_rng([seed, c, f]).choice(len(pool), count, replace=False)
                rows += [{**{k: pool[i][k] for k in TRAIN_FIELDS if k != "source"}, "source": "synthetic"}
                         for i in sorted(picks)]
    if not rows:
        raise ParamError("mix.include_real", mix.include_real, "true when mix.synthetic_per_class is 0")
    return rows
