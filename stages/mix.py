"""mix: the training set at the requested infeasible ratio, in data/mixed/train.csv."""

from collections import Counter

from varireal import io, mixing
from varireal.params import load

from stages import MIXED, RAW, SYNTHETIC


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    real = io.read_csv(RAW / "train.csv")
    manifest = io.read_csv(SYNTHETIC / "manifest.csv")
    rows = mixing.select(real, manifest, params.mix, params.seed)
    counts = Counter(row["feasibility"] or "real" for row in rows)
    synthetic = counts["feasible"] + counts["infeasible"]
    summary = {
        "condition": mixing.condition(params.mix),
        "attribute": params.mix.attribute,
        "real": counts["real"],
        "feasible": counts["feasible"],
        "infeasible": counts["infeasible"],
        "infeasible_ratio": round(counts["infeasible"] / synthetic, 6) if synthetic else None,
    }
    with io.atomic_dir(MIXED) as staging:
        io.write_csv(staging / "train.csv", rows, mixing.TRAIN_FIELDS)
        io.write_json(staging / "summary.json", summary)
    print(f"mix: {summary}")
