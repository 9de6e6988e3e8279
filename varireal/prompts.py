"""Attribute values per class x attribute x feasibility: what the edit stage will paint.

Backend `bank` reads them from rules that ship with the code, so the pipeline runs without an LLM.
For the embedded world the rules are the world's own, so every value's feasibility is exact; for the
real datasets they are curated lists in the bank file of the dataset's registry entry, by default
`varireal/prompt_bank/<dataset>.yaml` (format in each header).
Backends `hf` and `openai` ask a chat model instead (`varireal.llm`); `varireal.backends` picks one.
Every backend ends in `draw`, and gives each drawn colour value its RGB (`varireal.colors`): a bank's
`palette:` section, the world's renderer, or the model's answer.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from varireal import attributes, colors, datasets, render
from varireal.datasets import Rules
from varireal.errors import StageError
from varireal.records import Prompts

FEASIBILITIES = ("feasible", "infeasible")
MAX_VALUE_CHARS = 40



def value_problem(value: str) -> str | None:
    """Why value cannot be used, or None. Values end up in prompts, manifests and file names."""
    if not value.strip():
        return "an empty value"
    if len(value) > MAX_VALUE_CHARS:
        return f"{value[:MAX_VALUE_CHARS]!r}... is longer than {MAX_VALUE_CHARS} characters"
    if "/" in value or "\\" in value:
        return f"{value!r} contains a path separator"
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        return f"{value!r} contains a control character"
    return None


def overlap(rules: Rules) -> list[str]:
    """Values that are both feasible and infeasible for one attribute (case-insensitive)."""
    clashes = []
    for attribute, lists in rules.items():
        feasible = {v.casefold() for v in lists["feasible"]}
        clashes += [f"{attribute} {v!r}" for v in lists["infeasible"] if v.casefold() in feasible]
    return clashes


def draw(rules_per_class: dict[str, Rules], class_names: list[str], attributes, values_per_list: int, seed: int):
    """{class: {attribute: {"feasible": [...], "infeasible": [...]}}}, values_per_list of each at most,
    drawn without replacement in an order set by (seed, class index, attribute, feasibility)."""
    prompts = {}
    for label, name in enumerate(class_names):
        rules = rules_per_class[name]
        prompts[name] = {}
        for a, attribute in enumerate(attributes):
            prompts[name][attribute] = {}
            for f, feasibility in enumerate(FEASIBILITIES):
                values = rules[attribute][feasibility]
                rng = np.random.default_rng([seed, label, a, f])
                keep = rng.permutation(len(values))[:values_per_list]
                prompts[name][attribute][feasibility] = [values[i] for i in keep]
    return prompts


def with_colours(values: dict, colours_of) -> Prompts:
    """The drawn values and the colours of each drawn colour value: colours_of(class, value)."""
    rgb = {name: {value: colours_of(name, value) for attribute in colors.colour_attributes() if attribute in lists
                  for feasibility in FEASIBILITIES for value in lists[attribute][feasibility]}
           for name, lists in values.items()}
    return Prompts(values, rgb)


# ---- the shipped banks -------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Lists(_Section):
    feasible: list[str] | None = None
    infeasible: list[str] | None = None


# Every registered attribute may be set, none must be.
_Entry = create_model("_Entry", __base__=_Section, **{name: (_Lists | None, None) for name in attributes.names()})


class _Group(_Entry):
    name: str
    classes: list[str] = []
    match: str | None = None

    def matches(self, class_name: str) -> bool:
        return class_name in self.classes or bool(self.match and re.search(self.match, class_name))


class BankFile(_Section):
    """One dataset's bank: defaults < matching groups, in file order < the class's own entry."""

    unknown_classes: Literal["error", "defaults"]
    defaults: _Entry
    groups: list[_Group] = []
    classes: dict[str, _Entry] = {}
    palette: colors.Palette = {}  # every colour value above -> its colours

    def unpainted(self) -> list[tuple[str, str]]:
        """(where, value) of each colour value the palette lacks; where: defaults, a group or a class."""
        sections = [("defaults", self.defaults)] + [(f"group {g.name!r}", g) for g in self.groups]
        sections += [(f"class {name!r}", entry) for name, entry in self.classes.items()]
        return [(where, value) for where, entry in sections for attribute in colors.colour_attributes()
                if (lists := getattr(entry, attribute)) is not None
                for feasibility in FEASIBILITIES for value in getattr(lists, feasibility) or []
                if value not in self.palette]

    def rules(self, class_name: str, attributes) -> Rules:
        """The class's lists; raises KeyError for a class no group or entry names, if the file says so."""
        layers = [self.defaults] + [g for g in self.groups if g.matches(class_name)]
        if class_name in self.classes:
            layers.append(self.classes[class_name])
        if len(layers) == 1 and self.unknown_classes == "error":
            raise KeyError(class_name)
        rules: Rules = {}
        for attribute in attributes:
            rules[attribute] = {}
            for feasibility in FEASIBILITIES:
                for layer in layers:  # the last layer that sets a list wins, whole
                    lists = getattr(layer, attribute)
                    if lists is not None and getattr(lists, feasibility) is not None:
                        rules[attribute][feasibility] = getattr(lists, feasibility)
        return rules


def _spec(dataset_name: str) -> datasets.DatasetSpec:
    if dataset_name not in datasets.names():
        raise StageError(f"the prompt bank has no values for dataset {dataset_name!r}, which is not registered "
                         f"(registered: {', '.join(datasets.names())}); use prompt.backend hf or openai")
    return datasets.spec(dataset_name)


@cache
def load_bank(dataset_name: str) -> BankFile:
    path = _spec(dataset_name).bank_file()
    if not path.is_file():
        raise StageError(f"the prompt bank has no values for dataset {dataset_name!r} (no file {path}); "
                         "use prompt.backend hf or openai")
    try:
        bank_file = BankFile.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as err:
        raise StageError(f"prompt bank {path} is malformed: {' '.join(str(err).split())}") from None
    if missing := bank_file.unpainted():
        where, value = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise StageError(f"the {dataset_name} prompt bank {path}: colour value {value!r} of {where} has no entry in "
                         f"its palette{more}; add it there as a list of [r, g, b] colours, 0-255")
    return bank_file


def bank_colours(dataset_name: str, class_name: str, value: str) -> list[list[int]]:
    """A bank's colours for a colour value: the world's renderer's, or the bank file's palette."""
    if _spec(dataset_name).rules:
        if value not in render.COLORS:
            raise StageError(f"the {dataset_name} rules give class {class_name!r} colour {value!r}, which the "
                             f"renderer cannot paint (it paints {', '.join(render.COLORS)})")
        return colors.world_colours(value)
    return load_bank(dataset_name).palette[value]  # load_bank checked that every colour value has one


def bank_rules(dataset_name: str, class_name: str, attributes) -> Rules:
    """The full feasible and infeasible lists of one class, before drawing."""
    rules_of = _spec(dataset_name).rules
    if rules_of:  # a dataset whose rules are code (the embedded world): every value's feasibility is exact
        return rules_of(class_name)
    bank_file = load_bank(dataset_name)
    try:
        rules = bank_file.rules(class_name, attributes)
    except KeyError:
        raise StageError(f"the {dataset_name} prompt bank has no values for class {class_name!r} "
                         f"({datasets.spec(dataset_name).bank_file()}); add it there or use prompt.backend "
                         "hf or openai") from None
    clashes = overlap(rules)
    if clashes:
        raise StageError(f"the {dataset_name} prompt bank lists {clashes[0]} as both feasible and infeasible "
                         f"for class {class_name!r}; fix {datasets.spec(dataset_name).bank_file()}")
    return rules


def bank(dataset_name: str, class_names: list[str], attributes: tuple[str, ...], values_per_list: int,
         seed: int) -> Prompts:
    """{class: {attribute: {"feasible": [...], "infeasible": [...]}}}, values_per_list of each at most, and
    the colours of the colour values.

    Values are drawn without replacement, in a deterministic order set by seed.
    """
    rules = {name: bank_rules(dataset_name, name, attributes) for name in class_names}
    values = draw(rules, class_names, attributes, values_per_list, seed)
    return with_colours(values, lambda name, value: bank_colours(dataset_name, name, value))
