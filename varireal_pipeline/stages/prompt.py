"""prompt: feasible and infeasible attribute values per class, and the colours of the colour values, in
data/prompts.json."""

from varireal import backends, io, records
from varireal.errors import StageError
from varireal.params import ATTRIBUTES, load

from varireal_pipeline.stages import PROMPTS, RAW


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    if not (RAW / "classes.json").is_file():
        raise StageError(f"{RAW / 'classes.json'} is missing; run `varireal fetch` first")
    class_names = io.read_json(RAW / "classes.json")
    # Every class is answered before anything is written: a failure leaves the old file as it was.
    prompts = backends.prompts(params.prompt, params.dataset.name, class_names, ATTRIBUTES, params.seed)
    records.write_prompts(PROMPTS, prompts)
