"""Profiles: the paper's setup for a dataset as a YAML file of params that differ from the default.

`varireal profile pets` turns profiles/pets.yaml into `dvc exp run -S key=value ...`, so the run is an
ordinary DVC experiment whose params (and lock) record exactly what the profile set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from varireal.params import leaves

PROFILE_DIR = Path("profiles")


def path_of(name: str, folder: Path = PROFILE_DIR) -> Path:
    """folder/<name>.yaml, or name itself when it is a path to a YAML file."""
    candidate = Path(name)
    return candidate if candidate.suffix in (".yaml", ".yml") else folder / f"{name}.yaml"


def available() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar, which `dvc exp run -S` parses: strings always quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][\w./:@+-]*", text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text  # reads back as this very string
    # Hydra's quoted strings: escape quotes, and double only the backslashes that precede a quote or the end.
    escaped = re.sub(r"(\\+)('|$)", lambda m: m.group(1) * 2 + m.group(2), text).replace("'", "\\'")
    return f"'{escaped}'"


def overrides(profile: dict) -> list[str]:
    """The `-S` arguments that set every leaf of profile."""
    return [f"{key}={_hydra_value(value)}" for key, value in leaves(profile).items()]


def merged(base: dict, override: dict) -> dict:
    """base with override's leaves written over it (nested dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def load(name: str, folder: Path = PROFILE_DIR) -> dict:
    """The profile's params, with the profile it names in `inherit` (a name in folder) underneath."""
    path = path_of(name, folder)
    if not path.is_file():
        from varireal.errors import StageError

        raise StageError(f"no profile {path}; profiles here: {', '.join(available()) or 'none'}")
    profile = yaml.safe_load(path.read_text()) or {}
    base = profile.pop("inherit", None)
    return merged(load(base, folder), profile) if base else profile


def check(profile: dict, params: dict, source: str) -> None:
    """Every key the profile sets exists in params (dvc exp run -S only changes existing keys), and the
    params it produces are valid; raises ParamError naming the first bad key."""
    from varireal.params import ParamError, validate

    known = leaves(params)
    for key in leaves(profile):
        if key not in known and not any(k.startswith(key + ".") for k in known):
            raise ParamError(key, leaves(profile)[key], "not a key of params.yaml", source)
    validate(merged(params, profile), source)


def validate_merged(profile: dict, params: dict, source: str):
    """The validated Params that profile makes of params (varireal.params.Params)."""
    from varireal.params import validate

    check(profile, params, source)
    return validate(merged(params, profile), source)


# -- sweeps: a grid of conditions on top of a profile ---------------------------------------------------

GRIDS = ("paper", "ratio")


def paper_conditions(attributes: list[str], zero_shot: bool = False, mixed: bool = False) -> list[tuple[str, dict]]:
    """The paper's 13 conditions per dataset (its sbatch task list): real-only, then per attribute
    synthetic-only feasible and infeasible, then per attribute real + synthetic feasible and infeasible.
    zero_shot adds the pretrained model untouched; mixed adds real + synthetic at infeasible ratio 0.5 per
    attribute. Each is (name as MLflow's condition tag shows it, the params it sets)."""
    out: list[tuple[str, dict]] = []
    if zero_shot:
        out.append(("zero-shot", {"train": {"finetune": "none"}, "mix": {"synthetic_per_class": 0, "include_real": True}}))
    out.append(("real-only", {"mix": {"synthetic_per_class": 0, "include_real": True}}))
    for include_real in (False, True):
        for attribute in attributes:
            for kind, ratio in (("feasible", 0.0), ("infeasible", 1.0)):
                name = kind if include_real else f"synthetic-{kind}"
                out.append((f"{name} {attribute}", {"mix": {"attribute": attribute, "infeasible_ratio": ratio,
                                                           "include_real": include_real}}))
    if mixed:
        for attribute in attributes:
            out.append((f"mixed 0.5 {attribute}", {"mix": {"attribute": attribute, "infeasible_ratio": 0.5,
                                                           "include_real": True}}))
    return out


def ratio_conditions(ratios: list[float]) -> list[tuple[str, dict]]:
    """The README's sweep: one condition per infeasible ratio (every attribute, as mix.attribute says)."""
    return [(f"ratio {ratio:g}", {"mix": {"infeasible_ratio": ratio}}) for ratio in ratios]


def sweep_overrides(profile: dict, params: dict, conditions: list[tuple[str, dict]], seeds: list[int],
                    source: str) -> list[tuple[str, list[str]]]:
    """(label, `-S` values) for every condition x seed, each checked like a profile; every key is set once
    (the condition's and the seed's values over the profile's)."""
    out = []
    for name, setting in conditions:
        for seed in seeds:
            chosen = merged(merged(profile, setting), {"train": {"seed": seed}})
            check(chosen, params, f"{source} ({name}, seed {seed})")
            out.append((f"{name}, seed {seed}", overrides(chosen)))
    return out

