"""The paper's table from MLflow: top-1 per dataset x attribute x condition over seeds, with a verdict per
comparison (different, equivalent within the margin, inconclusive) from paired tests over seeds.

reading: the eval runs of an experiment; grouping: replicate groups and which pairs to compare (the
statistics are varireal.statistics'); rendering: report.md, report.csv, top1_vs_ratio.csv and the plot.
"""

from __future__ import annotations

from pathlib import Path

from varireal.errors import StageError
from varireal import statistics
from varireal.statistics import ALPHA

from varireal_pipeline.report.grouping import Report, build
from varireal_pipeline.report.reading import REPORT_TAG, read_runs
from varireal_pipeline.report import rendering
from varireal_pipeline.report.rendering import power_lines, write

__all__ = ["ALPHA", "REPORT_TAG", "Report", "make", "power_lines", "summary_metrics"]


def summary_metrics(report: Report) -> dict[str, float]:
    """The report's own MLflow run's metrics."""
    counts = report.verdicts()
    return {"runs_read": report.runs_read, "groups": len(report.groups), "comparisons": len(report.comparisons),
            "different": counts[statistics.DIFFERENT], "equivalent": counts[statistics.EQUIVALENT],
            "inconclusive": counts[statistics.INCONCLUSIVE], "not_enough_seeds": counts[statistics.NOT_ENOUGH_SEEDS],
            "more_seeds_to_queue": rendering.more_seeds(report) or 0}


def make(uri: str, experiment: str, out: Path, resamples: int = 2000, seed: int = 0,
         margin: float = 0.01) -> tuple[Report, list[Path]]:
    """Read the experiment's eval runs from the store at uri (already resolved) and write the report to out.
    margin: the equivalence margin as a fraction (0.01 = 1 point)."""
    runs, notes = read_runs(uri, experiment)
    if not runs:
        raise StageError(f"no finished eval runs in MLflow experiment {experiment!r} at {uri}; "
                         "run `dvc repro` (or `varireal eval`) first, or pass --experiment")
    report = build(runs, notes, resamples, seed, margin)
    return report, write(report, out)
