"""Attribute values per class x attribute x feasibility: what the edit stage will paint.

Backend `bank` reads them from rules that ship with the code, so the pipeline runs without an LLM.
For the embedded world the rules are the world's own, so every value's feasibility is exact.
"""

from __future__ import annotations

import numpy as np

FEASIBILITIES = ("feasible", "infeasible")


def bank(dataset_name: str, class_names: list[str], attributes: tuple[str, ...], values_per_list: int, seed: int):
    """{class: {attribute: {"feasible": [...], "infeasible": [...]}}}, values_per_list of each at most.

    Values are drawn without replacement, in a deterministic order set by seed.
    """
    if dataset_name != "world":
        raise ValueError(f"the prompt bank has no values for dataset {dataset_name!r}")
    from varireal.datasets import world

    prompts = {}
    for label, name in enumerate(class_names):
        rules = world.feasibility_rules(name)
        prompts[name] = {}
        for a, attribute in enumerate(attributes):
            prompts[name][attribute] = {}
            for f, feasibility in enumerate(FEASIBILITIES):
                values = rules[attribute][feasibility]
                rng = np.random.default_rng([seed, label, a, f])
                keep = rng.permutation(len(values))[:values_per_list]
                prompts[name][attribute][feasibility] = [values[i] for i in keep]
    return prompts
