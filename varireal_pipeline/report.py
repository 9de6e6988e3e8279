"""The paper's table from MLflow: top-1 per dataset x attribute x condition over seeds, with paired tests.

Every eval run is one replicate. Runs that differ only in `train.seed` (and `tracking.*`) form a group;
each group is compared with its real-only baseline and, within an attribute, feasible with infeasible
and every mixed ratio with both pure sets. Pairs are made per seed, on the same test images:
McNemar's exact test on the per-image predictions and a bootstrap over test images.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from varireal import io
from varireal.errors import StageError

REPORT_TAG = "report"  # tag of the report's own MLflow run; later reports skip such runs
FILES = ("report.md", "report.csv", "top1_vs_ratio.png", "top1_vs_ratio.csv")
ALPHA = 0.05
CONDITION_ORDER = {"real-only": 0, "feasible": 1, "mixed": 2, "infeasible": 3}

# Replicates share every param but these.
NOT_GROUPED = ("train.seed", "tracking.")
# A real-only model never sees a synthetic image, so these cannot change it: real-only runs from
# sweeps that differ only here are replicates of one baseline.
UNUSED_BY_REAL_ONLY = ("prompt.", "edit.", "score.", "mix.attribute", "mix.infeasible_ratio",
                       "mix.filter_score", "mix.filter_min")
# A condition's baseline is the real-only group that agrees on everything outside the synthetic set.
SYNTHETIC_SETUP = ("prompt.", "edit.", "score.", "mix.")
# Shown in their own columns, so never in the `setting` column.
LABEL_KEYS = ("dataset.name", "mix.attribute", "mix.infeasible_ratio")


def _starts(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in prefixes)


@dataclass
class Run:
    run_id: str
    start_time: int
    params: dict[str, str]
    condition: str
    top1: float
    paths: tuple[str, ...] | None = None  # the test images, in the order of `correct`
    correct: np.ndarray | None = None  # per test image: prediction == label

    @property
    def seed(self) -> str:
        return self.params.get("train.seed", "")


@dataclass
class Group:
    key: tuple[tuple[str, str], ...]
    dataset: str
    attribute: str
    condition: str
    infeasible_ratio: float | None  # None for real-only
    runs: dict[str, Run] = field(default_factory=dict)  # by train.seed
    setting: str = ""  # params that tell this group apart from another one with the same label

    @property
    def label(self) -> str:
        return f"mixed {self.infeasible_ratio:g}" if self.condition == "mixed" else self.condition

    @property
    def accuracies(self) -> np.ndarray:
        return np.array([run.top1 for run in self.runs.values()])

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        """Sample std over seeds; NaN with a single seed."""
        return float(self.accuracies.std(ddof=1)) if len(self.runs) > 1 else math.nan


@dataclass
class Comparison:
    """`group` against `reference`: difference = group - reference, paired per seed."""

    group: Group
    reference: Group
    paired_seeds: list[str]
    difference: float  # mean of per-seed top-1 differences (difference of means when no seed pairs)
    b: int | None = None  # pooled over paired seeds: reference right, group wrong
    c: int | None = None  # ... reference wrong, group right
    p_value: float | None = None
    ci: tuple[float, float] | None = None
    why_no_test: str = ""

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass
class Report:
    runs_read: int
    groups: list[Group]
    comparisons: list[Comparison]
    notes: list[str]
    resamples: int
    seed: int


# -- reading ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _no_progress_bars():
    """MLflow draws a progress bar per downloaded file; a report downloads one tiny file per run."""
    before = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"]
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = before


def _read_predictions(run: Run, uri: str, folder: Path) -> bool:
    """Fill run.paths and run.correct from the run's predictions.csv; False if it has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path="predictions.csv",
                                                    dst_path=str(folder / run.run_id), tracking_uri=uri)
        rows = io.read_csv(local)
        run.paths = tuple(row["path"] for row in rows)
        run.correct = np.array([row["actual"] == row["predicted"] for row in rows])
        return True
    except (MlflowException, OSError, KeyError):
        return False


def read_runs(uri: str, experiment: str) -> tuple[list[Run], list[str]]:
    """Every finished eval run of the experiment, with its per-image predictions; plus notes on skipped runs."""
    import mlflow

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return [], []  # asking MLflow would create an empty store
    mlflow.set_tracking_uri(uri)
    if mlflow.MlflowClient().get_experiment_by_name(experiment) is None:
        return [], []
    runs, notes = [], []
    skipped = {"report": 0, "unfinished": 0, "not eval": 0, "no predictions": 0}
    with tempfile.TemporaryDirectory(prefix="varireal-report-") as tmp, _no_progress_bars():
        for found in mlflow.search_runs(experiment_names=[experiment], output_format="list"):
            tags, metrics = found.data.tags, found.data.metrics
            if tags.get(REPORT_TAG) == "true":
                skipped["report"] += 1
            elif found.info.status != "FINISHED":
                skipped["unfinished"] += 1
            elif "condition" not in tags or "top1" not in metrics:
                skipped["not eval"] += 1
            else:
                run = Run(found.info.run_id, found.info.start_time or 0, dict(found.data.params),
                          tags["condition"], float(metrics["top1"]))
                if not _read_predictions(run, uri, Path(tmp)):
                    skipped["no predictions"] += 1  # still counted by its top1 metric
                runs.append(run)
    if skipped["report"] or skipped["unfinished"] or skipped["not eval"]:
        notes.append(f"Skipped {skipped['report']} report run(s), {skipped['unfinished']} unfinished run(s) and "
                     f"{skipped['not eval']} run(s) without a `condition` tag or `top1` metric.")
    if skipped["no predictions"]:
        notes.append(f"{skipped['no predictions']} run(s) have no readable predictions.csv: they count in means "
                     "and stds but not in McNemar's test or the bootstrap.")
    return runs, notes


# -- grouping -----------------------------------------------------------------------------------------


def _group_key(run: Run) -> tuple[tuple[str, str], ...]:
    skip = NOT_GROUPED + (UNUSED_BY_REAL_ONLY if run.condition == "real-only" else ())
    return tuple(sorted((k, v) for k, v in run.params.items() if not _starts(k, skip)))


def _baseline_key(group: Group) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in group.key if not _starts(k, SYNTHETIC_SETUP))


def _sibling_key(group: Group) -> tuple[tuple[str, str], ...]:
    """Groups with the same sibling key differ only in the infeasible ratio."""
    return tuple((k, v) for k, v in group.key if k != "mix.infeasible_ratio")


def group_runs(runs: list[Run]) -> tuple[list[Group], list[str]]:
    """Replicate groups, sorted for the table; notes on duplicate seeds."""
    groups: dict[tuple, Group] = {}
    notes = []
    for run in sorted(runs, key=lambda r: r.start_time, reverse=True):  # newest first: it wins a duplicate
        key = _group_key(run)
        real_only = run.condition == "real-only"
        ratio = None if real_only else float(run.params.get("mix.infeasible_ratio", "nan"))
        group = groups.setdefault(key, Group(key, run.params.get("dataset.name", "?"),
                                             "none" if real_only else run.params.get("mix.attribute", "?"),
                                             run.condition, ratio))
        if run.seed in group.runs:
            kept = group.runs[run.seed]
            notes.append(f"Runs {kept.run_id} and {run.run_id} share every param including train.seed="
                         f"{run.seed}: kept the newer one, {kept.run_id}.")
            continue
        group.runs[run.seed] = run
    ordered = sorted(groups.values(), key=lambda g: (g.dataset, g.condition != "real-only", g.attribute,
                                                     CONDITION_ORDER.get(g.condition, 9),
                                                     g.infeasible_ratio or 0.0, g.key))
    for group in ordered:
        group.runs = dict(sorted(group.runs.items(), key=lambda item: (len(item[0]), item[0])))  # 2 before 10
    _describe_settings(ordered)
    return ordered, notes


def _describe_settings(groups: list[Group]) -> None:
    """Name the params that tell apart groups that would otherwise show the same label."""
    by_label: dict[tuple, list[Group]] = {}
    for group in groups:
        by_label.setdefault((group.dataset, group.attribute, group.label), []).append(group)
    varying: set[str] = set()
    for same in by_label.values():
        if len(same) > 1:
            keys = set().union(*(dict(g.key) for g in same))
            varying |= {k for k in keys if len({dict(g.key).get(k) for g in same}) > 1}
    varying -= set(LABEL_KEYS)
    for group in groups:
        params = dict(group.key)
        group.setting = ", ".join(f"{k}={params[k]}" for k in sorted(varying) if k in params)


# -- statistics ---------------------------------------------------------------------------------------


def mcnemar(reference_correct: np.ndarray, group_correct: np.ndarray) -> tuple[int, int]:
    """Discordant pairs: (reference right and group wrong, reference wrong and group right)."""
    b = int(np.sum(reference_correct & ~group_correct))
    c = int(np.sum(~reference_correct & group_correct))
    return b, c


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: b ~ Binomial(b + c, 1/2) when both conditions are equally accurate."""
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def bootstrap_ci(reference: np.ndarray, group: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of mean-over-seeds accuracy difference (group - reference), resampling test
    images: rows are seeds, columns test images; one draw of images serves every seed and both sides."""
    from scipy.stats import bootstrap

    per_image = group.mean(axis=0) - reference.mean(axis=0)  # the statistic is linear: average seeds first
    result = bootstrap((per_image,), np.mean, n_resamples=resamples, method="percentile", confidence_level=0.95,
                       vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _aligned(runs: list[Run]) -> list[np.ndarray] | None:
    """Each run's per-image correctness in the order of the first run's images; None if they differ."""
    if any(run.correct is None for run in runs):
        return None
    order = runs[0].paths
    out = []
    for run in runs:
        if run.paths == order:
            out.append(run.correct)
        elif sorted(run.paths) == sorted(order) and len(set(order)) == len(order):
            position = {path: i for i, path in enumerate(run.paths)}
            out.append(run.correct[[position[path] for path in order]])
        else:
            return None
    return out


def compare(group: Group, reference: Group, resamples: int, seed: int) -> Comparison:
    seeds = [s for s in group.runs if s in reference.runs]
    if not seeds:
        return Comparison(group, reference, [], group.mean - reference.mean,
                          why_no_test="no seed in common: difference of means, no paired test")
    difference = float(np.mean([group.runs[s].top1 - reference.runs[s].top1 for s in seeds]))
    aligned = _aligned([reference.runs[s] for s in seeds] + [group.runs[s] for s in seeds])
    if aligned is None:
        return Comparison(group, reference, seeds, difference,
                          why_no_test="predictions missing or on different test images")
    reference_correct, group_correct = np.stack(aligned[:len(seeds)]), np.stack(aligned[len(seeds):])
    b, c = mcnemar(reference_correct, group_correct)
    return Comparison(group, reference, seeds, difference, b, c, mcnemar_p(b, c),
                      bootstrap_ci(reference_correct, group_correct, resamples, seed))


def comparisons(groups: list[Group], resamples: int, seed: int) -> tuple[list[Comparison], list[str]]:
    """Each condition vs its real-only baseline; feasible vs infeasible; each mixed ratio vs both pure sets."""
    notes = []
    baselines: dict[tuple, list[Group]] = {}
    for group in groups:
        if group.condition == "real-only":
            baselines.setdefault(_baseline_key(group), []).append(group)
    siblings: dict[tuple, dict[str, Group]] = {}
    for group in groups:
        if group.condition in ("feasible", "infeasible"):
            siblings.setdefault(_sibling_key(group), {})[group.condition] = group

    out = []
    for group in groups:
        if group.condition == "real-only":
            continue
        candidates = baselines.get(_baseline_key(group), [])
        if candidates:
            baseline = max(candidates, key=lambda g: len(g.runs))  # several only if mix.include_real differs
            out.append(compare(group, baseline, resamples, seed))
        else:
            notes.append(f"No real-only baseline with the same dataset and training params for "
                         f"{group.dataset} / {group.attribute} / {group.label}.")
        pure = siblings.get(_sibling_key(group), {})
        if group.condition == "infeasible" and "feasible" in pure:
            out.append(compare(group, pure["feasible"], resamples, seed))
        if group.condition == "mixed":
            out += [compare(group, pure[name], resamples, seed) for name in ("feasible", "infeasible") if name in pure]
    return out, notes


def build(runs: list[Run], notes: list[str], resamples: int = 2000, seed: int = 0) -> Report:
    groups, group_notes = group_runs(runs)
    found, compare_notes = comparisons(groups, resamples, seed)
    return Report(len(runs), groups, found, notes + group_notes + compare_notes, resamples, seed)


# -- writing ------------------------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 2) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}"


def rows(report: Report) -> list[dict]:
    """report.csv: one row per group x comparison (a group without comparisons has one row, reference empty).
    Accuracies and differences in percent (points)."""
    by_group: dict[int, list[Comparison]] = {}
    for comparison in report.comparisons:
        by_group.setdefault(id(comparison.group), []).append(comparison)
    out = []
    for group in report.groups:
        base = {"dataset": group.dataset, "attribute": group.attribute, "condition": group.label,
                "infeasible_ratio": "" if group.infeasible_ratio is None else group.infeasible_ratio,
                "setting": group.setting, "n_seeds": len(group.runs), "seeds": " ".join(group.runs),
                "top1_mean_pct": _pct(group.mean, 4), "top1_std_pct": _pct(group.std, 4)}
        for comparison in by_group.get(id(group), [None]):
            row = dict(base, reference="", n_paired_seeds="", diff_pct="", mcnemar_b="", mcnemar_c="",
                       mcnemar_p="", ci_low_pct="", ci_high_pct="", significant="", note="")
            if comparison is not None:
                row.update(reference=comparison.reference.label, n_paired_seeds=len(comparison.paired_seeds),
                           diff_pct=_pct(comparison.difference, 4), note=comparison.why_no_test)
                if comparison.p_value is not None:
                    row.update(mcnemar_b=comparison.b, mcnemar_c=comparison.c, mcnemar_p=f"{comparison.p_value:.6g}",
                               ci_low_pct=_pct(comparison.ci[0], 4), ci_high_pct=_pct(comparison.ci[1], 4),
                               significant=comparison.significant)
            out.append(row)
    return out


def _markdown(report: Report, table: list[dict]) -> str:
    lines = ["# VariReal report", "",
             f"{report.runs_read} eval run(s) read, {len(report.groups)} group(s), "
             f"{len(report.comparisons)} comparison(s), "
             f"{sum(c.significant for c in report.comparisons)} with McNemar p < {ALPHA}.", ""]
    with_setting = any(row["setting"] for row in table)
    for dataset in dict.fromkeys(row["dataset"] for row in table):
        lines += [f"## {dataset}", "",
                  "| attribute | condition |" + (" setting |" if with_setting else "") +
                  " seeds | top-1 % (mean ± std) | vs | Δ pp | McNemar b / c | p | 95% CI of Δ (pp) |",
                  "|---|---|" + ("---|" if with_setting else "") + "--:|--:|---|--:|--:|--:|--:|"]
        previous = None
        for row in (r for r in table if r["dataset"] == dataset):
            group_cells = (row["attribute"], row["condition"], row["setting"])
            first = group_cells != previous  # a group's own cells only on its first comparison row
            previous = group_cells
            std = f" ± {float(row['top1_std_pct']):.2f}" if row["top1_std_pct"] else ""
            cells = [row["attribute"], row["condition"]] + ([row["setting"]] if with_setting else [])
            cells = cells + [str(row["n_seeds"]), f"{float(row['top1_mean_pct']):.2f}{std}"] if first \
                else [""] * (len(cells) + 2)
            diff = f"{float(row['diff_pct']):+.2f}" if row["diff_pct"] else ""
            if row["reference"] and not row["n_paired_seeds"]:
                diff += " (unpaired)"
            p = f"{float(row['mcnemar_p']):.3g}" + (" *" if row["significant"] else "") if row["mcnemar_p"] else ""
            ci = (f"[{float(row['ci_low_pct']):+.2f}, {float(row['ci_high_pct']):+.2f}]"
                  if row["ci_low_pct"] else "")
            discordant = f"{row['mcnemar_b']} / {row['mcnemar_c']}" if row["mcnemar_p"] else ""
            lines.append("| " + " | ".join(cells + [row["reference"], diff, discordant, p, ci]) + " |")
        lines.append("")
    lines += [
        "## Method", "",
        "- A group is the set of eval runs that differ only in `train.seed` (and `tracking.*`); its seeds are "
        "replicates. Real-only runs ignore `prompt.*`, `edit.*`, `score.*` and the mix's attribute, ratio and "
        "filter, which cannot change a model trained on real images only; they are the baseline of every "
        "condition of their dataset trained with the same params.",
        "- top-1: the eval run's `top1` metric, mean and sample std (ddof 1) over seeds, in %.",
        "- Δ: the mean over paired seeds (the same `train.seed` in both groups) of the per-seed top-1 difference, "
        "group minus reference, in percentage points; \"unpaired\" marks a difference of means where no seed pairs.",
        "- McNemar: b = test images the reference gets right and the group wrong, c = the reverse, counted on "
        "predictions.csv of the same seed and **pooled (summed) over the paired seeds**; p is the exact two-sided "
        "binomial test of b against Binomial(b + c, 1/2) (scipy.stats.binomtest). Pooling treats every "
        "(seed, image) pair as independent although the seeds share the test images, so p is somewhat "
        f"optimistic when seeds disagree. `*` marks p < {ALPHA}; no correction for multiple comparisons.",
        f"- 95% CI: percentile bootstrap over test images ({report.resamples} resamples, seed {report.seed}): each "
        "resample draws test images with replacement, the same draw for both groups and every seed, and takes "
        "the difference of mean-over-seeds accuracies. It covers test-set sampling only, not the spread over "
        "seeds (see the std).",
        "- top1_vs_ratio.csv / .png: top-1 mean and std (%) per attribute against the infeasible ratio; the "
        "real-only baseline appears as attribute `real-only` at ratios 0 and 1 (a flat line).",
    ]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def ratio_points(report: Report) -> list[dict]:
    """top1_vs_ratio.csv: the plotted points, in percent."""
    out = []
    for group in report.groups:
        ratios = [0.0, 1.0] if group.condition == "real-only" else [group.infeasible_ratio]
        for ratio in ratios:
            out.append({"dataset": group.dataset, "setting": group.setting,
                        "attribute": "real-only" if group.condition == "real-only" else group.attribute,
                        "infeasible_ratio": ratio, "top1_mean": _pct(group.mean, 4),
                        "top1_std": _pct(group.std, 4), "n": len(group.runs)})
    return out


def _plot(report: Report, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = list(dict.fromkeys(group.dataset for group in report.groups))
    figure = Figure(figsize=(6 * len(datasets), 4.5))
    FigureCanvasAgg(figure)
    for axes, dataset in zip(figure.subplots(1, len(datasets), squeeze=False)[0], datasets):
        series: dict[tuple[str, str], list[Group]] = {}
        for group in report.groups:
            if group.dataset != dataset:
                continue
            if group.condition == "real-only":
                label = "real-only" + (f" ({group.setting})" if group.setting else "")
                line = axes.axhline(100 * group.mean, color="black", linestyle="--", label=label)
                if not math.isnan(group.std):
                    axes.axhspan(100 * (group.mean - group.std), 100 * (group.mean + group.std),
                                 color=line.get_color(), alpha=0.12)
            else:
                series.setdefault((group.attribute, group.setting), []).append(group)
        for (attribute, setting), members in series.items():
            members.sort(key=lambda g: g.infeasible_ratio)
            axes.errorbar([g.infeasible_ratio for g in members], [100 * g.mean for g in members],
                          yerr=[0 if math.isnan(g.std) else 100 * g.std for g in members],
                          marker="o", capsize=3, label=attribute + (f" ({setting})" if setting else ""))
        axes.set(title=dataset, xlabel="infeasible ratio", ylabel="top-1 (%)", xlim=(-0.05, 1.05))
        axes.legend(fontsize="small")
    figure.savefig(path, dpi=120, bbox_inches="tight")  # tight: room for a long legend


def write(report: Report, out: Path) -> list[Path]:
    """The four report files in out; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    table = rows(report)
    io.write_text_atomic(out / "report.md", _markdown(report, table))
    io.write_csv(out / "report.csv", table)
    io.write_csv(out / "top1_vs_ratio.csv", ratio_points(report),
                 ["dataset", "setting", "attribute", "infeasible_ratio", "top1_mean", "top1_std", "n"])
    _plot(report, out / "top1_vs_ratio.png")
    return [out / name for name in FILES]


def summary_metrics(report: Report) -> dict[str, float]:
    return {"runs_read": report.runs_read, "groups": len(report.groups),
            "comparisons": len(report.comparisons),
            "significant_comparisons": sum(c.significant for c in report.comparisons)}


def make(uri: str, experiment: str, out: Path, resamples: int = 2000, seed: int = 0) -> tuple[Report, list[Path]]:
    """Read the experiment's eval runs from the store at uri (already resolved) and write the report to out."""
    runs, notes = read_runs(uri, experiment)
    if not runs:
        raise StageError(f"no finished eval runs in MLflow experiment {experiment!r} at {uri}; "
                         "run `dvc repro` (or `varireal eval`) first, or pass --experiment")
    report = build(runs, notes, resamples, seed)
    return report, write(report, out)
