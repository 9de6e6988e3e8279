"""score: scores of every synthetic image in data/scores/scores.csv; how well feasibility is told apart in
metrics/scores.json."""

from varireal import io, records, scoring
from varireal.errors import StageError
from varireal.params import load
from varireal.runtime import fix_cpu_threads

from varireal_pipeline.stages import METRICS, PROMPTS, RAW, SCORES, SYNTHETIC, clip_weights


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    settings = params.score.model_copy(update={"pretrained": clip_weights(params.score.pretrained)})
    if not (SYNTHETIC / "manifest.csv").is_file():
        raise StageError(f"{SYNTHETIC / 'manifest.csv'} is missing; run `varireal edit` first")
    fix_cpu_threads(params.score.threads)
    manifest = records.read_manifest(SYNTHETIC / "manifest.csv")
    real = records.read_split(RAW / "train.csv")
    known = {row.path for row in real}
    if unknown := sorted({m.source for m in manifest} - known):
        raise StageError(f"{SYNTHETIC / 'manifest.csv'} edits {unknown[0]}, which is not in {RAW / 'train.csv'}; "
                         "run `varireal edit` again")
    values = records.read_prompts(PROMPTS).values
    scores = scoring.score_pool(manifest, real, values, io.read_json(RAW / "classes.json"), settings, params.seed)
    with io.atomic_dir(SCORES) as staging:
        records.write_scores(staging / "scores.csv", scores)
    summary = scoring.summarize(manifest, scores)
    io.write_json(METRICS / "scores.json", summary)
    print(f"score: {len(scores)} images; feasibility AUROC {summary['auroc_feasibility']}")
