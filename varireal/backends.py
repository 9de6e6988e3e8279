"""The backends, each chosen one way: its name in params -> a factory.

Factories import their implementation when called, explicitly, so a run loads only the backend it
uses and the import graph (tests/test_architecture.py) still shows every dependency. params.py names
the same backends in its schema; tests/test_registry.py checks the two agree.
"""

from __future__ import annotations

from varireal.params import EditParams, PromptParams


def _bank(params: PromptParams, dataset_name: str, class_names: list[str], attributes, seed: int):
    from varireal import prompts

    return prompts.bank(dataset_name, class_names, attributes, params.values_per_list, seed)


def _hf(params: PromptParams, dataset_name: str, class_names: list[str], attributes, seed: int):
    from varireal import llm

    return llm.prompts(llm.HFChat, params, dataset_name, class_names, attributes, seed)


def _openai(params: PromptParams, dataset_name: str, class_names: list[str], attributes, seed: int):
    from varireal import llm

    return llm.prompts(llm.OpenAIChat, params, dataset_name, class_names, attributes, seed)


PROMPT_BACKENDS = {"bank": _bank, "hf": _hf, "openai": _openai}


def prompts(params: PromptParams, dataset_name: str, class_names: list[str], attributes, seed: int):
    """The prompt stage's output (a varireal.records.Prompts: {class: {attribute: {feasible, infeasible}}} and the
    colours of the colour values), from prompt.backend."""
    return PROMPT_BACKENDS[params.backend](params, dataset_name, class_names, attributes, seed)


def _composite(params: EditParams, device, rgb):
    from varireal.editing import CompositeEditor

    return CompositeEditor(params.texture_strength)


def _diffusion(params: EditParams, device, rgb):
    from varireal.diffusion import DiffusionEditor

    return DiffusionEditor(params, device, rgb)


EDIT_BACKENDS = {"composite": _composite, "diffusion": _diffusion}


def editor(params: EditParams, device=None, rgb=None):
    """The editor edit.backend names (a varireal.editing.Editor). The diffusion editor loads its models on
    first use, on device (this process's own accelerator, e.g. cuda:1 under accelerate) when edit.device
    allows, and tints with rgb ({class: {colour value: [[r, g, b], ...]}}, the prompts' colours). The
    composite editor paints the world's procedural colours by name."""
    return EDIT_BACKENDS[params.backend](params, device, rgb or {})
