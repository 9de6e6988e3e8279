"""mix: the training set at the requested infeasible ratio, in data/mixed/train.csv."""

from collections import Counter

from varireal import io, mixing, records
from varireal.errors import StageError
from varireal.params import load

from varireal_pipeline.stages import MIXED, RAW, SCORES, SYNTHETIC


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    real = records.read_split(RAW / "train.csv")
    manifest = records.read_manifest(SYNTHETIC / "manifest.csv")
    scores = None
    if params.mix.filter_score:
        if not (SCORES / "scores.csv").is_file():
            raise StageError(f"mix.filter_score needs {SCORES / 'scores.csv'}; run `varireal score` first")
        scores = records.read_scores(SCORES / "scores.csv")
    edits = mixing.candidates(manifest, scores)
    rows = mixing.select(real, edits, params.mix, params.seed)
    counts = Counter(row.feasibility or "real" for row in rows)
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
        summary["filter"] = mixing.filter_counts(real, edits, params.mix)
    with io.atomic_dir(MIXED) as staging:
        records.write_mixed(staging / "train.csv", rows, with_scores=params.mix.filter_score is not None)
        io.write_json(staging / "summary.json", summary)
    print(f"mix: {summary}")
