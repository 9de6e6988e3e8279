"""fetch: the dataset's images, masks and class names, with a few-shot training split, in data/raw/;
what it read, copied, converted and skipped in metrics/fetch.json."""

from varireal import datasets, io
from varireal.params import load

from varireal_pipeline.stages import METRICS, RAW


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    dataset = datasets.get(params.dataset)
    datasets.check_shots(dataset, params.dataset.shots)
    with io.atomic_dir(RAW) as staging:
        counts = dataset.write(staging, RAW, params.dataset.shots, params.seed)
    io.write_json(METRICS / "fetch.json", counts)
