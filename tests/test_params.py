import yaml
import pytest
from typer.testing import CliRunner

from varireal_pipeline.cli import app
from varireal.params import ParamError, Params, load

from conftest import REPO

CONTRACT_KEYS = [
    "seed", "dataset.name", "dataset.root", "dataset.download", "dataset.shots", "prompt.backend", "prompt.model",
    "prompt.base_url", "edit.backend", "edit.model", "edit.attributes", "mix.attribute", "mix.infeasible_ratio",
    "train.model", "train.pretrained", "tracking.uri", "tracking.experiment",
]


def test_repository_params_are_valid_and_hold_the_contract_keys():
    params = load(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    flat = params.flat()
    for key in CONTRACT_KEYS:
        assert key in flat
        node = raw
        for part in key.split("."):
            node = node[part]  # written out in params.yaml, not only a schema default


def test_flat_params_use_dotted_keys():
    flat = Params().flat()
    assert flat["mix.infeasible_ratio"] == 0.0
    assert flat["train.lora.rank"] == 16


@pytest.mark.parametrize(
    ("command", "override", "key", "value"),
    [
        ("mix", {"mix": {"infeasible_ratio": 1.5}}, "mix.infeasible_ratio", "1.5"),
        ("mix", {"mix": {"attribute": "smell"}}, "mix.attribute", "smell"),
        ("mix", {"mix": {"infeasable_ratio": 0.5}}, "mix.infeasable_ratio", "0.5"),
        ("train", {"train": {"steps": "many"}}, "train.steps", "many"),
        ("edit", {"edit": {"attributes": ["color", "smell"]}}, "edit.attributes.1", "smell"),
        ("edit", {"edit": {"workers": 0}}, "edit.workers", "0"),
        ("train", {"train": {"launcher": "accelerate launch"}}, "train.launcher", "accelerate launch"),
        ("fetch", {"dataset": {"shots": 500}}, "dataset.shots", "500"),
    ],
)
def test_bad_parameter_exits_2_with_one_line_before_touching_outputs(project, command, override, key, value):
    path = project(**override)
    # Something a previous run produced must survive the rejected run untouched.
    (path.parent / "data" / "raw").mkdir(parents=True)
    kept = path.parent / "data" / "raw" / "classes.json"
    kept.write_text('["kept"]')

    result = CliRunner().invoke(app, [command, "--params", str(path)])

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert key in lines[0] and value in lines[0]
    assert "allowed" in lines[0] or "at most" in lines[0]
    assert kept.read_text() == '["kept"]'


def test_unknown_key_message_lists_the_allowed_keys(project):
    path = project(mix={"infeasable_ratio": 0.5})
    with pytest.raises(ParamError) as err:
        load(path)
    assert "infeasible_ratio" in str(err.value) and "synthetic_per_class" in str(err.value)


def test_missing_params_file_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["fetch", "--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such file" in result.output
