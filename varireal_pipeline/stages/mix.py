"""mix: the training set at the requested infeasible ratio, in data/mixed/train.csv."""

from collections import Counter

from varireal import io, mixing
from varireal.errors import StageError
from varireal.params import load

from varireal_pipeline.stages import MIXED, RAW, SCORES, SYNTHETIC


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    real = io.read_csv(RAW / "train.csv")
    manifest = io.read_csv(SYNTHETIC / "manifest.csv")
    if params.mix.filter_score:
        if not (SCORES / "scores.csv").is_file():
            raise StageError(f"mix.filter_score needs {SCORES / 'scores.csv'}; run `varireal score` first")
        manifest = mixing.join_scores(manifest, io.read_csv(SCORES / "scores.csv"))
    rows = mixing.select(real, manifest, params.mix, params.seed)
    counts = Counter(row["feasibility"] or "real" for row in rows)
    synthetic = counts["feasible"] + counts["infeasible"]
    summary = {
        "condition": mixing.condition(params.mix),
        # The param as given, also for real-only (where eval.json says "none"): summary.json keeps its bytes.
        "attribute": params.mix.attribute,
        "real": counts["real"],
        "feasible": counts["feasible"],
        "infeasible": counts["infeasible"],
        "infeasible_ratio": round(counts["infeasible"] / synthetic, 6) if synthetic else None,
    }
    if params.mix.filter_score:
        summary["filter"] = mixing.filter_counts(real, manifest, params.mix)
    with io.atomic_dir(MIXED) as staging:
        io.write_csv(staging / "train.csv", rows, mixing.train_fields(params.mix))
        io.write_json(staging / "summary.json", summary)
    print(f"mix: {summary}")
