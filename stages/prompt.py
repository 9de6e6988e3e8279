"""prompt: feasible and infeasible attribute values per class, in data/prompts.json."""

from varireal import io, prompts
from varireal.params import ATTRIBUTES, load

from stages import PROMPTS, RAW


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    class_names = io.read_json(RAW / "classes.json")
    values = prompts.bank(params.dataset.name, class_names, ATTRIBUTES, params.prompt.values_per_list, params.seed)
    io.write_json(PROMPTS, values)
