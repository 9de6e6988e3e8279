"""Safe loading: code shipped with a model runs only when a param allows it; hostile class names and values
stay inside data/; an API key from the environment reaches no file, run or log."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataset_layouts import write_aircraft
from test_prompts import FakeOpenAI, cache, server, tiny_chat_model  # noqa: F401 (fixtures)
from varireal import colors, edit_plan, io, llm, records
from varireal.datasets import world
from varireal.params import ATTRIBUTES, PromptParams
from varireal.prompts import bank, bank_rules


def invoke(*stages):
    from varireal_pipeline.cli import app

    results = []
    for stage in stages:
        result = CliRunner().invoke(app, [stage])
        results.append(result)
        if result.exit_code != 0:
            break
    return results


# ---- remote code -------------------------------------------------------------------------------

HOSTILE_MODULE = """\
import os, pathlib
pathlib.Path(os.environ["VARIREAL_REMOTE_CODE_MARKER"]).write_text("the model's own code ran")
from transformers import LlamaConfig, LlamaForCausalLM

class HostileConfig(LlamaConfig):
    model_type = "hostile-llama"

class HostileForCausalLM(LlamaForCausalLM):
    config_class = HostileConfig
"""


@pytest.fixture
def remote_code_model(tiny_chat_model, tmp_path, monkeypatch) -> Path:
    """The tiny chat model, its config asking for a python file in its folder that leaves a marker when imported."""
    import shutil

    folder = tmp_path / "remote-code-model"
    shutil.copytree(tiny_chat_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="hostile-llama", auto_map={"AutoConfig": "hostile.HostileConfig",
                                                        "AutoModelForCausalLM": "hostile.HostileForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "hostile.py").write_text(HOSTILE_MODULE)
    monkeypatch.setenv("VARIREAL_REMOTE_CODE_MARKER", str(tmp_path / "marker"))
    return folder


def test_model_that_asks_to_run_its_own_code_is_refused_by_default(project, cache, remote_code_model, tmp_path):
    project(dataset={"name": "pets"}, prompt={"backend": "hf", "model": str(remote_code_model), "device": "cpu"})
    io.write_json("data/raw/classes.json", ["Abyssinian"])
    (result,) = invoke("prompt")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: prompt: prompt.model=")
    assert "prompt.trust_remote_code: true" in result.output
    assert not (tmp_path / "marker").exists()
    assert not Path("data/prompts.json").exists()


def test_model_code_runs_when_the_param_allows_it(remote_code_model, tmp_path, monkeypatch):
    from transformers import dynamic_module_utils

    # transformers copies the code into its modules cache before importing it: keep that in tmp_path
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    params = PromptParams(backend="hf", model=str(remote_code_model), device="cpu", trust_remote_code=True)
    chat = llm.HFChat(params)
    assert type(chat.model).__name__ == "HostileForCausalLM"
    assert (tmp_path / "marker").read_text() == "the model's own code ran"


# ---- hostile class names and values ------------------------------------------------------------

HOSTILE_CLASSES = {"707-320": "../../etc", "F/A-18": "a/b", "Cessna 172": ".."}


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_hostile_class_names_stay_inside_data(project, tmp_path):
    """Class names from a dataset's own files become folders only through io.slug."""
    made = write_aircraft(tmp_path / "datasets")
    data = made["images"].parent
    for listing in data.glob("*.txt"):
        text = listing.read_text()
        for name, hostile in HOSTILE_CLASSES.items():
            text = text.replace(f" {name}\n", f" {hostile}\n") if listing.name != "variants.txt" else \
                text.replace(f"{name}\n", f"{hostile}\n")
        listing.write_text(text)
    project(dataset={"name": "aircraft", "root": str(tmp_path / "datasets"), "shots": 2, "mask": {"method": "grabcut"}},
            edit={"attributes": ["color"], "per_image": 1})
    # Values the composite editor can paint (the world's vocabulary), under the hostile names.
    world_prompts = bank("world", world.CLASS_NAMES[:3], ATTRIBUTES, 2, 0)
    hostile = dict(zip(world.CLASS_NAMES[:3], HOSTILE_CLASSES.values()))
    records.write_prompts("data/prompts.json", records.Prompts(
        {hostile[name]: lists for name, lists in world_prompts.values.items()},
        {hostile[name]: rgb for name, rgb in world_prompts.rgb.items()}))
    outside_before = files_under(tmp_path.parent) - files_under(tmp_path)

    fetch, edit = invoke("fetch", "edit")
    assert fetch.exit_code == 0 and edit.exit_code == 0, fetch.output + edit.output
    assert io.read_json("data/raw/classes.json") == list(HOSTILE_CLASSES.values())
    manifest = io.read_csv("data/synthetic/manifest.csv")
    assert {row["class"] for row in manifest} == set(HOSTILE_CLASSES.values())
    data_root = (tmp_path / "data").resolve()
    rows = manifest + io.read_csv("data/raw/train.csv") + io.read_csv("data/raw/test.csv")
    for row in rows:
        assert Path(row["path"]).resolve().is_relative_to(data_root), row["path"]
        assert Path(row["path"]).is_file()
    assert {Path(r["path"]).parent.name for r in manifest} == {"etc", "a_b", "_"}
    assert files_under(tmp_path.parent) - files_under(tmp_path) == outside_before  # nothing written beside


def test_values_never_become_paths_and_hostile_ones_are_refused():
    prompts = {"../..": {attribute: {"feasible": ["../../../escape", "ok"], "infeasible": ["/etc/passwd", "x"]}
                         for attribute in ATTRIBUTES}}
    source = records.SplitRow("data/raw/train/x/0001.jpg", "data/raw/masks/0001.png", 0, "../..")
    items = edit_plan.plan([source], prompts, list(ATTRIBUTES), per_image=2, seed=0, out_prefix=Path("data/synthetic"))
    assert {item.value for item in items} >= {"../../../escape", "/etc/passwd"}
    for item in items:
        assert Path(item.path).parts[:2] == ("data", "synthetic") and ".." not in Path(item.path).parts
        assert "escape" not in item.path and "passwd" not in item.path
    # An LLM answer with such a value is sent back, never written (test_prompts retries it end to end).
    answer = {a: {"feasible": ["../../etc", "b", "c"], "infeasible": ["x", "y", "z"]} for a in ATTRIBUTES}
    with pytest.raises(llm.AnswerError, match="path separator"):
        llm.parse_answer(json.dumps(answer), 2)


# ---- API keys ----------------------------------------------------------------------------------

SECRET = "sk-secret-safety-test-7f3a9c"


def world_answer(class_name: str) -> dict:
    """A chat answer with the world's rules for the class, its colour values with the renderer's colours."""
    rules = bank_rules("world", class_name, ATTRIBUTES)
    rules["color"] = {feasibility: [{"value": value, "rgb": colors.world_colours(value)} for value in values]
                      for feasibility, values in rules["color"].items()}
    return rules


def test_api_key_reaches_no_file_mlflow_run_or_output(project, server, cache, capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    # The server answers with the world's own rules, so the composite editor can paint its values.
    server.always = lambda cls: json.dumps(world_answer(cls))
    project(prompt={"backend": "openai", "model": "served-model", "base_url": server.url},
            train={"steps": 1}, edit={"attributes": ["color"], "per_image": 1}, mix={"synthetic_per_class": 2})
    results = invoke("fetch", "prompt", "edit", "pretrain", "score", "mix", "train", "eval")
    assert [r.exit_code for r in results] == [0] * 8, results[-1].output
    assert server.requests and all(r["headers"]["authorization"] == f"Bearer {SECRET}" for r in server.requests)
    assert Path("mlflow.db").is_file() and any(Path("mlartifacts").rglob("eval.json"))

    secret = SECRET.encode()
    leaks = [p for p in files_under(tmp_path) if secret in p.read_bytes()]
    assert not leaks
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + "".join(r.output for r in results)
    assert os.environ["OPENAI_API_KEY"] == SECRET  # still set: the search above really ran with it in place
