"""The prompt stage: shipped banks for every dataset, and chat-model backends (openai, hf) whose
answers are validated, retried, cached, and written only when every class succeeded."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from torchvision.datasets import Flowers102
from typer.testing import CliRunner

from official_classes import AIRCRAFT, CARS, PETS
from varireal import colors, io, llm, records
from varireal.datasets import world
from varireal.errors import StageError
from varireal.params import ATTRIBUTES
from varireal.prompts import FEASIBILITIES, bank, bank_rules, load_bank, value_problem

OFFICIAL = {"pets": PETS, "aircraft": AIRCRAFT, "cars": CARS, "flowers102": list(Flowers102.classes)}


def run_prompt_stage():
    from varireal_pipeline.cli import app

    return CliRunner().invoke(app, ["prompt"])


def write_classes(names: list[str]) -> None:
    io.write_json("data/raw/classes.json", names)


# ---- the bank ----------------------------------------------------------------------------------


def test_world_bank_output_is_byte_identical_to_the_committed_one():
    values = bank("world", world.CLASS_NAMES, ATTRIBUTES, values_per_list=3, seed=0).values
    text = json.dumps(values, indent=2) + "\n"  # as data/prompts.json held them before they had colours
    # The md5 that dvc.lock recorded for data/prompts.json of the default params, before its colours.
    assert hashlib.md5(text.encode()).hexdigest() == "a006bdaddb89ddabff4dbcf82e05953a"


def test_official_class_lists_have_their_published_sizes():
    assert {name: len(set(classes)) for name, classes in OFFICIAL.items()} == {
        "pets": 37, "aircraft": 100, "cars": 196, "flowers102": 102}


@pytest.mark.parametrize("dataset", sorted(OFFICIAL))
def test_shipped_bank_covers_every_official_class_with_disjoint_safe_values(dataset):
    official = OFFICIAL[dataset]
    for class_name in official:
        rules = bank_rules(dataset, class_name, ATTRIBUTES)  # raises for a class the bank does not know
        for attribute in ATTRIBUTES:
            lists = rules[attribute]
            assert len(lists["feasible"]) >= 3 and len(lists["infeasible"]) >= 3, (class_name, attribute)
            feasible = {v.casefold() for v in lists["feasible"]}
            assert not feasible & {v.casefold() for v in lists["infeasible"]}, (class_name, attribute)
            for value in lists["feasible"] + lists["infeasible"]:
                assert isinstance(value, str) and value_problem(value) is None, (class_name, value)
    # A misspelt class in the file would silently match nothing: every name it lists is official.
    bank_file = load_bank(dataset)
    named = set(bank_file.classes) | {name for group in bank_file.groups for name in group.classes}
    assert named <= set(official), named - set(official)


def test_bank_groups_shape_the_values_of_their_classes():
    assert "ruddy" in bank_rules("pets", "Abyssinian", ATTRIBUTES)["color"]["feasible"]
    assert "aircraft carrier deck" in bank_rules("aircraft", "F/A-18", ATTRIBUTES)["background"]["feasible"]
    assert "aircraft carrier deck" in bank_rules("aircraft", "A380", ATTRIBUTES)["background"]["infeasible"]
    # Later groups win: a cargo van that the name also calls a minivan gets the minivan's colors.
    assert "champagne" in bank_rules("cars", "Ram C/V Cargo Van Minivan 2012", ATTRIBUTES)["color"]["feasible"]
    assert "desert tan" in bank_rules("cars", "Jeep Wrangler SUV 2012", ATTRIBUTES)["color"]["feasible"]
    assert "golden yellow" in bank_rules("flowers102", "sunflower", ATTRIBUTES)["color"]["feasible"]


def test_unknown_class_fails_naming_it_or_falls_back_as_its_bank_says():
    with pytest.raises(StageError, match="'Dodo Bird'"):
        bank("pets", ["Abyssinian", "Dodo Bird"], ATTRIBUTES, 3, 0)
    assert load_bank("cars").unknown_classes == "defaults"
    fallback = bank_rules("cars", "Hovercar 3000", ATTRIBUTES)
    assert fallback == {a: {f: getattr(getattr(load_bank("cars").defaults, a), f) for f in FEASIBILITIES}
                        for a in ATTRIBUTES}
    with pytest.raises(StageError, match="no values for dataset 'imagenet'"):
        bank("imagenet", ["tench"], ATTRIBUTES, 3, 0)


def test_bank_draws_are_deterministic_per_seed_and_come_from_the_rules():
    first = bank("aircraft", AIRCRAFT, ATTRIBUTES, 3, seed=0)
    assert first == bank("aircraft", AIRCRAFT, ATTRIBUTES, 3, seed=0)
    assert first != bank("aircraft", AIRCRAFT, ATTRIBUTES, 3, seed=1)
    for class_name, per_attribute in first.values.items():
        rules = bank_rules("aircraft", class_name, ATTRIBUTES)
        for attribute, lists in per_attribute.items():
            for feasibility, values in lists.items():
                assert len(values) == len(set(values)) == min(3, len(rules[attribute][feasibility]))
                assert set(values) <= set(rules[attribute][feasibility])


def test_prompt_stage_writes_the_bank_of_a_real_dataset(project):
    project(dataset={"name": "pets"}, prompt={"values_per_list": 3})  # every list holds >= 3
    write_classes(PETS)
    result = run_prompt_stage()
    assert result.exit_code == 0, result.output
    prompts = records.read_prompts("data/prompts.json")
    assert list(prompts.values) == PETS
    assert all(len(prompts.values[c][a][f]) == 3 for c in PETS for a in ATTRIBUTES for f in FEASIBILITIES)
    palette = load_bank("pets").palette
    assert prompts.rgb["Birman"] == {value: palette[value] for f in FEASIBILITIES
                                     for value in prompts.values["Birman"]["color"][f]}


# ---- answers from a chat model -------------------------------------------------------------------


def answer_for(class_name: str, n: int = 4) -> dict:
    """A valid answer whose values name their class, so the test can tell which answer a value came from.
    Colour values come with their colours, value i with i + 1 of them."""
    def entry(attribute, value, i):
        if attribute in colors.colour_attributes():
            return {"value": value, "rgb": [[10 * i, 20 * j, 255] for j in range(i + 1)]}
        return value

    return {attribute: {feasibility: [entry(attribute, f"{class_name} {attribute} {feasibility} {i}", i)
                                      for i in range(n)]
                        for feasibility in FEASIBILITIES} for attribute in ATTRIBUTES}


def value_names(values: list) -> list[str]:
    """The values of an answer's list, without the colours."""
    return [value["value"] if isinstance(value, dict) else value for value in values]


def coloured(*values: str) -> list[dict]:
    return [{"value": value, "rgb": [[1, 2, 3]]} for value in values]


def asked_class(body: dict) -> str:
    return body["messages"][3]["content"].splitlines()[0].removeprefix("Class: ")


MALFORMED = {
    "not JSON": lambda c: "Sure! Here are some values for you.",
    "truncated": lambda c: json.dumps(answer_for(c))[:-20],
    "overlapping": lambda c: json.dumps({**answer_for(c), "color": {"feasible": coloured("red", "blue", "tan"),
                                                                    "infeasible": coloured("Red", "pink", "green")}}),
    "colour without rgb": lambda c: json.dumps({**answer_for(c), "color": {
        "feasible": ["red", "blue", "tan"], "infeasible": coloured("pink", "green", "x")}}),
    "rgb out of range": lambda c: json.dumps({**answer_for(c), "color": {
        "feasible": [{"value": "red", "rgb": [[300, 0, 0]]}, *coloured("blue", "tan")],
        "infeasible": coloured("pink", "green", "x")}}),
    "too few values": lambda c: json.dumps({**answer_for(c), "texture": {"feasible": ["fur"],
                                                                         "infeasible": ["scales", "bark"]}}),
    "path separator": lambda c: json.dumps({**answer_for(c), "background": {
        "feasible": ["../../etc", "a/b", "c"], "infeasible": ["x", "y", "z"]}}),
}


class FakeOpenAI:
    """An OpenAI-compatible chat completions server on 127.0.0.1, in a thread. `script` holds the
    replies to give first (functions of the asked class); after it, valid answers."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list = []
        self.always = None
        self.json_mode = True  # False: answer HTTP 400 to response_format, as some local servers do
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if "response_format" in body and not fake.json_mode:
                    self.send_error(400, "response_format is not supported")
                    return
                reply = fake.always or (fake.script.pop(0) if fake.script else (lambda c: json.dumps(answer_for(c))))
                content = reply(asked_class(body))
                payload = json.dumps({
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def server():
    fake = FakeOpenAI()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VARIREAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "llm"


CLASSES = ["Abyssinian", "Pug", "Sphynx"]
SECRET = "sk-test-do-not-leak-4242"


@pytest.fixture
def openai_project(project, server, cache, monkeypatch):
    monkeypatch.setenv("VARIREAL_TEST_KEY", SECRET)
    project(dataset={"name": "pets"}, prompt={"backend": "openai", "model": "tiny-chat", "base_url": server.url,
                                              "api_key_env": "VARIREAL_TEST_KEY", "retries": 2,
                                              "max_new_tokens": 300})
    write_classes(CLASSES)
    return project


def test_openai_answers_become_prompts_and_the_key_stays_secret(openai_project, server, cache):
    result = run_prompt_stage()
    assert result.exit_code == 0, result.output
    prompts = records.read_prompts("data/prompts.json")
    assert list(prompts.values) == CLASSES
    for class_name in CLASSES:
        for attribute in ATTRIBUTES:
            for feasibility in FEASIBILITIES:
                values = prompts.values[class_name][attribute][feasibility]
                asked = answer_for(class_name)[attribute][feasibility]
                assert len(values) == 2 and set(values) <= set(value_names(asked))
        # Every drawn colour value carries the colours the model gave it.
        given = {item["value"]: item["rgb"] for f in FEASIBILITIES for item in answer_for(class_name)["color"][f]}
        drawn = [value for f in FEASIBILITIES for value in prompts.values[class_name]["color"][f]]
        assert prompts.rgb[class_name] == {value: given[value] for value in drawn}

    assert len(server.requests) == len(CLASSES)
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"
    assert request["body"]["model"] == "tiny-chat"
    assert request["body"]["temperature"] == 0.0 and request["body"]["max_tokens"] == 300
    assert request["body"]["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in request["body"]["messages"]] == ["system", "user", "assistant", "user"]

    written = [Path("data/prompts.json"), *cache.iterdir()]
    assert len(written) == 1 + len(CLASSES)
    for path in written:
        assert SECRET not in path.read_text()
    assert SECRET not in result.output


def test_openai_answer_in_a_code_fence_is_accepted(openai_project, server):
    server.script = [lambda c: "```json\n" + json.dumps(answer_for(c)) + "\n```"]
    result = run_prompt_stage()
    assert result.exit_code == 0, result.output
    assert len(server.requests) == len(CLASSES)  # no retry needed


def test_openai_server_without_json_mode_is_asked_without_it(openai_project, server):
    server.json_mode = False
    result = run_prompt_stage()
    assert result.exit_code == 0, result.output
    with_format = [r for r in server.requests if "response_format" in r["body"]]
    assert len(with_format) == 1 and len(server.requests) == len(CLASSES) + 1  # tried once, then dropped


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_openai_malformed_answer_is_retried_with_what_was_wrong(openai_project, server, kind):
    server.script = [MALFORMED[kind]]
    result = run_prompt_stage()
    assert result.exit_code == 0, result.output
    assert len(server.requests) == len(CLASSES) + 1
    retry = server.requests[1]["body"]["messages"]
    assert retry[-2] == {"role": "assistant", "content": MALFORMED[kind](CLASSES[0])}
    assert retry[-1]["role"] == "user" and "not valid" in retry[-1]["content"]
    prompts = records.read_prompts("data/prompts.json").values
    assert prompts[CLASSES[0]]["color"]["feasible"][0].startswith(CLASSES[0])


def test_openai_always_malformed_fails_in_one_line_and_writes_nothing(openai_project, server):
    Path("data/prompts.json").write_text("the previous prompts\n")
    server.always = MALFORMED["overlapping"]
    result = run_prompt_stage()
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "'Abyssinian'" in lines[0] and "openai" in lines[0] and "'tiny-chat'" in lines[0]
    assert "both feasible and infeasible" in lines[0]
    assert len(server.requests) == 3  # 1 + prompt.retries, then it stops
    assert Path("data/prompts.json").read_text() == "the previous prompts\n"


def test_openai_failure_on_a_later_class_leaves_no_prompts_file(openai_project, server):
    server.script = [lambda c: json.dumps(answer_for(c))] + [MALFORMED["not JSON"]] * 3
    result = run_prompt_stage()
    assert result.exit_code == 1 and "'Pug'" in result.output
    assert not Path("data/prompts.json").exists()


def test_openai_second_run_is_answered_from_the_cache(openai_project, server, cache):
    assert run_prompt_stage().exit_code == 0
    first = Path("data/prompts.json").read_text()
    asked = len(server.requests)
    Path("data/prompts.json").unlink()
    result = run_prompt_stage()
    assert result.exit_code == 0, result.output
    assert len(server.requests) == asked  # nothing new was asked
    assert Path("data/prompts.json").read_text() == first
    # A change to anything the answer depends on asks again.
    openai_project(dataset={"name": "pets"}, prompt={"backend": "openai", "model": "tiny-chat",
                                                     "base_url": server.url, "api_key_env": "VARIREAL_TEST_KEY",
                                                     "temperature": 0.5})
    assert run_prompt_stage().exit_code == 0
    assert len(server.requests) == asked + len(CLASSES)


def test_openai_unreachable_server_is_one_clear_line(project, cache, server):
    url = server.url
    server.server.shutdown()
    server.server.server_close()
    project(prompt={"backend": "openai", "model": "tiny-chat", "base_url": url})
    write_classes(CLASSES)
    result = run_prompt_stage()
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "cannot reach" in result.output


def test_parse_answer_cleans_and_checks():
    data = answer_for("X", 3)
    data["color"]["feasible"] = coloured("  Ruddy ", "ruddy", "fawn", "blue  gray", "Fawn")
    data["color"]["feasible"][2]["rgb"] = [[215, 180, 135], [90, 60, 40]]
    rules, palette = llm.parse_answer(json.dumps(data), values_per_list=3)
    assert rules["color"]["feasible"] == ["Ruddy", "fawn", "blue gray"]
    assert palette["fawn"] == [[215, 180, 135], [90, 60, 40]] and palette["Ruddy"] == [[1, 2, 3]]
    assert palette["X color infeasible 2"] == [[20, 0, 255], [20, 20, 255], [20, 40, 255]]
    with pytest.raises(llm.AnswerError, match="at least 4"):
        llm.parse_answer(json.dumps(data), values_per_list=4)
    with pytest.raises(llm.AnswerError, match="control character"):
        llm.parse_answer(json.dumps({**data, "texture": {"feasible": ["a\nb", "c", "d"],
                                                         "infeasible": ["e", "f", "g"]}}), 3)
    with pytest.raises(llm.AnswerError, match="smell"):
        llm.parse_answer(json.dumps({**data, "smell": {"feasible": [], "infeasible": []}}), 3)
    with pytest.raises(llm.AnswerError, match="not an object"):
        llm.parse_answer("[1, 2]", 3)


# ---- a tiny local transformers chat model ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory) -> Path:
    """A randomly initialised Llama with a word-level tokenizer trained here, saved like a hub model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [llm.SYSTEM_PROMPT, json.dumps(llm.EXAMPLE_ANSWER), "Class: Abyssinian Pug system user assistant"]
    words.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="[EOS]")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} [EOS] {% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-chat")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def hf_project(project, cache, tiny_chat_model):
    project(dataset={"name": "pets"}, prompt={"backend": "hf", "model": str(tiny_chat_model), "retries": 1,
                                              "max_new_tokens": 16, "device": "cpu"})
    write_classes(CLASSES[:2])


def count_generate_calls(monkeypatch) -> list:
    from transformers import LlamaForCausalLM

    calls = []
    real_generate = LlamaForCausalLM.generate

    def generate(self, *args, **kwargs):
        calls.append(kwargs)
        return real_generate(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "generate", generate)
    return calls


def test_hf_model_that_writes_garbage_fails_after_its_retries(hf_project, monkeypatch):
    calls = count_generate_calls(monkeypatch)
    result = run_prompt_stage()
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]  # below the loading bar
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), result.output
    assert "'Abyssinian'" in errors[0] and "hf model" in errors[0] and "2 attempts" in errors[0]
    assert len(calls) == 2  # 1 + prompt.retries, greedy, as many tokens as the params allow
    assert all(c["do_sample"] is False and c["max_new_tokens"] == 16 for c in calls)
    assert not Path("data/prompts.json").exists()


def test_hf_model_answer_is_parsed_into_prompts(hf_project, monkeypatch, tiny_chat_model):
    from transformers import AutoTokenizer

    calls = count_generate_calls(monkeypatch)
    # The model really generates; only its decoded text is replaced by a fixed, valid answer.
    tokenizer_class = type(AutoTokenizer.from_pretrained(tiny_chat_model))
    monkeypatch.setattr(tokenizer_class, "decode", lambda self, ids, **kw: json.dumps(answer_for("fixed")))
    result = run_prompt_stage()
    assert result.exit_code == 0, result.output
    assert len(calls) == 2
    prompts = records.read_prompts("data/prompts.json").values
    assert list(prompts) == CLASSES[:2]
    for class_name in CLASSES[:2]:
        values = prompts[class_name]["texture"]["infeasible"]
        assert len(values) == 2 and set(values) <= set(answer_for("fixed")["texture"]["infeasible"])
