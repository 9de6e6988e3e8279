"""Attribute values from a chat model: backend `hf` (transformers) or `openai` (any OpenAI-compatible server).

Each class is one conversation: a system prompt that explains feasibility, a one-shot example, and
the class. The answer must be a JSON object that passes `Answer`; a malformed one is sent back with
what was wrong, up to `retries` times. Valid answers are cached on disk, so a re-run asks nothing.
A colour value comes with its colours, `{"value": ..., "rgb": [[r, g, b], ...]}` (integers 0-255, one
or more: a coat of several colours lists each); the editors tint with them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, create_model, field_validator

from varireal import attributes, colors, datasets, io
from varireal.errors import StageError
from varireal.params import ATTRIBUTES, PromptParams
from varireal.prompts import draw, overlap, value_problem, with_colours
from varireal.records import Prompts

# The attributes and the answer's shape, as the registry defines them; braces doubled for format().
_MEANINGS = "\n".join(f"- {name}: {attributes.get(name).meaning};" for name in attributes.names())[:-1] + "."
_COLOUR_ITEM = '{"value": ..., "rgb": [[r, g, b], ...]}'
_SHAPE = "{" + ", ".join(
    f'"{name}": {{"feasible": [{_COLOUR_ITEM}, ...], "infeasible": [{_COLOUR_ITEM}, ...]}}'
    if name in colors.colour_attributes() else f'"{name}": {{"feasible": [...], "infeasible": [...]}}'
    for name in attributes.names()) + "}"

SYSTEM_PROMPT = """\
You write attribute values for minimally editing real photos of one class of object. Each edit \
changes one attribute and keeps the object's identity:
""" + _MEANINGS + """
A value is feasible if a real photo of this class could show it (a pug on a sofa, an Abyssinian \
with ruddy fur). A value is infeasible if it could not occur in reality for this class, although it \
can still be painted (a pug on the moon, a neon-green Abyssinian).
For each attribute give at least {n} feasible and at least {n} infeasible values, all different; no \
value may be both feasible and infeasible. Each value is a short phrase of at most 4 words, without \
slashes or line breaks.
Each """ + " and ".join(colors.colour_attributes()) + """ value is an object with the value and "rgb": the colours a \
photo of it shows, as [r, g, b] integers 0-255; one for a plain colour, several for a coat, paint or \
pattern of several colours (e.g. black and tan: [[30, 28, 27], [175, 115, 60]]).
Answer with only a JSON object with exactly this shape:
""" + _SHAPE.replace("{", "{{").replace("}", "}}")

EXAMPLE_CLASS = ("Abyssinian", "a cat or dog breed (Oxford-IIIT Pets)")
EXAMPLE_ANSWER = {
    "background": {"feasible": ["living room sofa", "sunny windowsill", "garden lawn", "cat tree"],
                   "infeasible": ["surface of the moon", "ocean floor", "inside a volcano", "outer space"]},
    "color": {"feasible": [{"value": "ruddy", "rgb": [[165, 92, 50]]}, {"value": "blue", "rgb": [[130, 135, 145]]},
                           {"value": "fawn", "rgb": [[215, 180, 135]]},
                           {"value": "silver tabby", "rgb": [[45, 45, 48], [195, 197, 200]]}],
              "infeasible": [{"value": "purple", "rgb": [[128, 50, 170]]},
                             {"value": "neon green", "rgb": [[57, 255, 20]]},
                             {"value": "hot pink", "rgb": [[255, 50, 150]]},
                             {"value": "electric blue", "rgb": [[20, 90, 255]]}]},
    "texture": {"feasible": ["short ticked fur", "sleek coat", "soft dense fur", "fine glossy fur"],
                "infeasible": ["fish scales", "tree bark", "bird feathers", "brushed metal"]},
}


def user_message(class_name: str, kind: str) -> str:
    return f"Class: {class_name}\nThe class is {kind}."


def conversation(class_name: str, dataset_name: str, values_per_list: int) -> list[dict[str, str]]:
    kind = datasets.spec(dataset_name).kind
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(n=values_per_list)},
        {"role": "user", "content": user_message(*EXAMPLE_CLASS)},
        {"role": "assistant", "content": json.dumps(EXAMPLE_ANSWER)},
        {"role": "user", "content": user_message(class_name, kind)},
    ]


# ---- validating an answer ----------------------------------------------------------------------


class AnswerError(ValueError):
    """An answer that cannot be used; the message is sent back to the model."""


def _clean(values: list, info: ValidationInfo, name=lambda item: item, renamed=lambda item, value: value) -> list:
    """values without duplicates (case-insensitive, dropped, not an error), whitespace collapsed."""
    kept, seen = [], set()
    for item in values:
        problem = value_problem(name(item))
        if problem:
            raise ValueError(problem)
        value = " ".join(name(item).split())
        if value.casefold() not in seen:
            seen.add(value.casefold())
            kept.append(renamed(item, value))
    minimum = (info.context or {}).get("values_per_list", 1)
    if len(kept) < minimum:
        raise ValueError(f"{len(kept)} distinct values, at least {minimum} needed")
    return kept


class Lists(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    feasible: list[str]
    infeasible: list[str]

    @field_validator("feasible", "infeasible")
    @classmethod
    def _clean(cls, values: list[str], info: ValidationInfo) -> list[str]:
        return _clean(values, info)


class ColourValue(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    value: str
    rgb: colors.Colours


class ColourLists(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    feasible: list[ColourValue]
    infeasible: list[ColourValue]

    @field_validator("feasible", "infeasible")
    @classmethod
    def _clean(cls, values: list[ColourValue], info: ValidationInfo) -> list[ColourValue]:
        return _clean(values, info, lambda item: item.value,
                      lambda item, value: item.model_copy(update={"value": value}))


# One list pair per registered attribute, each required; any other key is an error sent back to the model.
Answer = create_model("Answer", __config__=ConfigDict(extra="forbid"),
                      **{name: (ColourLists if name in colors.colour_attributes() else Lists, ...)
                         for name in attributes.names()})


FENCE = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def parse_answer(text: str, values_per_list: int) -> tuple[dict[str, dict[str, list[str]]], colors.Palette]:
    """The answer's lists, cleaned, and the colours of its colour values; raises AnswerError saying what is
    wrong, in one line."""
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnswerError(f"not a JSON object ({err.msg} at character {err.pos})") from None
    if not isinstance(data, dict):
        raise AnswerError(f"a JSON {type(data).__name__}, not an object")
    try:
        answer = Answer.model_validate(data, context={"values_per_list": values_per_list})
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'the object'}: {e['msg'].removeprefix('Value error, ')}"
                    for e in err.errors()[:3]]
        raise AnswerError("; ".join(problems)) from None
    rules, palette = answer.model_dump(), {}
    for attribute in colors.colour_attributes():
        for feasibility, items in rules[attribute].items():
            palette.update((item["value"], item["rgb"]) for item in items)
            rules[attribute][feasibility] = [item["value"] for item in items]
    clashes = overlap(rules)
    if clashes:
        raise AnswerError(f"both feasible and infeasible: {', '.join(clashes)}")
    return rules, palette


# ---- chat backends: messages in, text out ------------------------------------------------------


class OpenAIChat:
    """Any server that speaks the OpenAI chat completions API (vLLM, llama.cpp, Ollama, OpenAI)."""

    def __init__(self, params: PromptParams):
        import openai

        self.params = params
        # Local servers ignore the key; the client insists on one.
        api_key = os.environ.get(params.api_key_env) or "unused"
        self.client = openai.OpenAI(base_url=params.base_url, api_key=api_key)
        self.json_mode = True

    def __call__(self, messages: list[dict[str, str]]) -> str:
        import openai

        request = dict(model=self.params.model, messages=messages, temperature=self.params.temperature,
                       max_tokens=self.params.max_new_tokens)
        try:
            try:
                extra = {"response_format": {"type": "json_object"}} if self.json_mode else {}
                response = self.client.chat.completions.create(**request, **extra)
            except openai.BadRequestError:
                if not self.json_mode:
                    raise
                self.json_mode = False  # a server without JSON mode: ask again, rely on the prompt
                response = self.client.chat.completions.create(**request)
        except openai.APIConnectionError:
            raise StageError(f"cannot reach the openai server at {self.params.base_url}; start it or fix "
                             "prompt.base_url") from None
        except openai.APIStatusError as err:
            raise StageError(f"the openai server at {self.params.base_url} answered HTTP {err.status_code} for "
                             f"model {self.params.model!r}: {_one_line(err.message)}") from None
        return response.choices[0].message.content or ""


class HFChat:
    """A transformers chat model, run locally: its chat template, greedy decoding at temperature 0."""

    def __init__(self, params: PromptParams):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from varireal.hub import from_pretrained
        from varireal.runtime import resolve_device

        self.params = params
        self.device = resolve_device(params.device)
        trust = params.trust_remote_code
        try:
            self.tokenizer = from_pretrained(AutoTokenizer, params.model, "prompt.model", trust)
            self.model = from_pretrained(AutoModelForCausalLM, params.model, "prompt.model", trust,
                                         dtype="auto").to(self.device).eval()
        except (OSError, ValueError) as err:
            raise StageError(f"cannot load the hf chat model {params.model!r}: {_one_line(str(err))}; "
                             "set prompt.model to a hub id or a local folder") from None
        if not self.tokenizer.chat_template:
            raise StageError(f"the hf model {params.model!r} has no chat template; use a chat (instruct) model")

    def __call__(self, messages: list[dict[str, str]]) -> str:
        import torch

        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True).to(self.device)
        sampling = ({"do_sample": True, "temperature": self.params.temperature} if self.params.temperature > 0
                    else {"do_sample": False})
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.params.max_new_tokens, pad_token_id=pad,
                                         **sampling)
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)



def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---- the answer cache --------------------------------------------------------------------------


def cache_dir() -> Path:
    root = os.environ.get("VARIREAL_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "varireal") / "llm"


def cache_key(params: PromptParams, messages: list[dict[str, str]]) -> str:
    """Everything that shapes the answer, and nothing secret: the API key is not part of it."""
    request = {"backend": params.backend, "model": params.model, "base_url": params.base_url,
               "messages": messages, "temperature": params.temperature, "max_new_tokens": params.max_new_tokens}
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def ask(load_chat, params: PromptParams, class_name: str,
        dataset_name: str) -> tuple[dict[str, dict[str, list[str]]], colors.Palette]:
    """One class's validated lists and colours, from the cache or the model (load_chat() gives the backend).
    The cache holds the answer's text as the model gave it."""
    messages = conversation(class_name, dataset_name, params.values_per_list)
    cached = cache_dir() / f"{cache_key(params, messages)}.json"
    if cached.is_file():
        try:
            return parse_answer(cached.read_text(), params.values_per_list)
        except AnswerError:
            pass  # a damaged entry: ask again and overwrite it
    problem = ""
    for _ in range(params.retries + 1):
        reply = load_chat()(messages)
        try:
            answer = parse_answer(reply, params.values_per_list)
        except AnswerError as err:
            problem = str(err)
            messages = messages + [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": f"That answer is not valid: {problem}. Answer again with only the "
                                            "JSON object, in the shape the instructions give."},
            ]
            continue
        io.write_text_atomic(cached, reply)
        return answer
    raise StageError(f"class {class_name!r}: {params.backend} model {params.model!r} gave no valid answer in "
                     f"{params.retries + 1} attempts; last problem: {_one_line(problem)}. Try a stronger model, more "
                     "prompt.retries, or prompt.backend bank")


def prompts(chat, params: PromptParams, dataset_name: str, class_names: list[str], attributes=ATTRIBUTES,
            seed: int = 0) -> Prompts:
    """{class: {attribute: {feasible, infeasible}}} from the model, drawn like the bank's, with the colours the
    model gave; chat is the backend's class (OpenAIChat, HFChat), made from params on the first cache miss."""
    load_chat = functools.cache(lambda: chat(params))
    answers = {name: ask(load_chat, params, name, dataset_name) for name in class_names}
    values = draw({name: rules for name, (rules, _) in answers.items()}, class_names, attributes,
                  params.values_per_list, seed)
    return with_colours(values, lambda name, value: answers[name][1][value])
