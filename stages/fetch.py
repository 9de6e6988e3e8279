"""fetch: the dataset's images, masks and class names, with a few-shot training split, in data/raw/."""

from varireal import datasets, io
from varireal.params import load

from stages import RAW


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    dataset = datasets.get(params.dataset)
    datasets.check_shots(dataset, params.dataset.shots)
    with io.atomic_dir(RAW) as staging:
        dataset.write(staging, RAW, params.dataset.shots, params.seed)
