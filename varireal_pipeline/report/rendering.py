"""The report's files: report.md, report.csv, top1_vs_ratio.csv and top1_vs_ratio.png.

Accuracies are fractions up to here; these files show them in percent (points for differences).
"""

from __future__ import annotations

import math
from pathlib import Path

from varireal import io, mixing
from varireal.statistics import ALPHA

from varireal_pipeline.report.grouping import Comparison, Group, Report

FILES = ("report.md", "report.csv", "top1_vs_ratio.png", "top1_vs_ratio.csv")
CSV_PERCENT_DIGITS = 4
CSV_P_DIGITS = 6  # significant digits


def _pct(value: float | None, digits: int = 2) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}"


def _shown(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


# report.md rounds the figures report.csv shows, not the exact ones, so that a figure half-way between two
# of its roundings reads the same in both files.
def _csv_percent(value: float) -> float:
    return round(100 * value, CSV_PERCENT_DIGITS)


def _csv_p(p: float) -> float:
    if p == 0 or not math.isfinite(p):
        return p
    return round(p, CSV_P_DIGITS - 1 - math.floor(math.log10(abs(p))))


def table(report: Report) -> list[tuple[Group, Comparison | None]]:
    """The table's rows: one per group x comparison; a group without comparisons has one, without reference."""
    by_group: dict[int, list[Comparison]] = {}
    for comparison in report.comparisons:
        by_group.setdefault(id(comparison.group), []).append(comparison)
    return [(group, comparison) for group in report.groups for comparison in by_group.get(id(group), [None])]


def csv_rows(report: Report) -> list[dict]:
    """report.csv. Accuracies and differences in percent (points)."""
    out = []
    for group, comparison in table(report):
        row = {"dataset": group.dataset, "attribute": group.attribute, "condition": group.label,
               "infeasible_ratio": "" if group.infeasible_ratio is None else group.infeasible_ratio,
               "setting": group.setting, "n_seeds": len(group.runs), "seeds": " ".join(group.runs),
               "top1_mean_pct": _pct(group.mean, CSV_PERCENT_DIGITS),
               "top1_std_pct": _pct(group.std, CSV_PERCENT_DIGITS),
               "reference": "", "n_paired_seeds": "", "diff_pct": "", "mcnemar_b": "", "mcnemar_c": "",
               "mcnemar_p": "", "ci_low_pct": "", "ci_high_pct": "", "significant": "", "note": ""}
        if comparison is not None:
            result = comparison.result
            row.update(reference=comparison.reference.label, n_paired_seeds=len(result.paired_seeds),
                       diff_pct=_pct(result.difference, CSV_PERCENT_DIGITS), note=result.why_no_test)
            if result.p_value is not None:
                row.update(mcnemar_b=result.b, mcnemar_c=result.c, mcnemar_p=f"{result.p_value:.{CSV_P_DIGITS}g}",
                           ci_low_pct=_pct(result.ci[0], CSV_PERCENT_DIGITS),
                           ci_high_pct=_pct(result.ci[1], CSV_PERCENT_DIGITS), significant=result.significant)
        out.append(row)
    return out


def _markdown_cells(group: Group, comparison: Comparison | None) -> list[str]:
    """The comparison's cells of a row of report.md: vs, Δ, McNemar b / c, p and the CI."""
    if comparison is None:
        return ["", "", "", "", ""]
    result = comparison.result
    diff = f"{_csv_percent(result.difference):+.2f}" if _shown(result.difference) else ""
    if not result.paired_seeds:
        diff += " (unpaired)"
    if result.p_value is None:
        return [comparison.reference.label, diff, "", "", ""]
    p = f"{_csv_p(result.p_value):.3g}" + (" *" if result.significant else "")
    low, high = result.ci
    ci = f"[{_csv_percent(low):+.2f}, {_csv_percent(high):+.2f}]" if _shown(low) else ""
    return [comparison.reference.label, diff, f"{result.b} / {result.c}", p, ci]


def markdown(report: Report) -> str:
    significant = sum(c.result.significant for c in report.comparisons)
    lines = ["# VariReal report", "",
             f"{report.runs_read} eval run(s) read, {len(report.groups)} group(s), "
             f"{len(report.comparisons)} comparison(s), {significant} with McNemar p < {ALPHA}.", ""]
    rows = table(report)
    with_setting = any(group.setting for group in report.groups)
    for dataset in dict.fromkeys(group.dataset for group in report.groups):
        lines += [f"## {dataset}", "",
                  "| attribute | condition |" + (" setting |" if with_setting else "") +
                  " seeds | top-1 % (mean ± std) | vs | Δ pp | McNemar b / c | p | 95% CI of Δ (pp) |",
                  "|---|---|" + ("---|" if with_setting else "") + "--:|--:|---|--:|--:|--:|--:|"]
        previous = None
        for group, comparison in ((g, c) for g, c in rows if g.dataset == dataset):
            group_cells = (group.attribute, group.label, group.setting)
            first = group_cells != previous  # a group's own cells only on its first comparison row
            previous = group_cells
            cells = [group.attribute, group.label] + ([group.setting] if with_setting else [])
            if first:
                std = f" ± {_csv_percent(group.std):.2f}" if _shown(group.std) else ""
                cells += [str(len(group.runs)), f"{_csv_percent(group.mean):.2f}{std}"]
            else:
                cells = [""] * (len(cells) + 2)
            lines.append("| " + " | ".join(cells + _markdown_cells(group, comparison)) + " |")
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


def _series_name(group: Group) -> str:
    """The attribute, marked when the runs trained without real images (their own line)."""
    return group.attribute + (" (synthetic only)" if mixing.is_synthetic_only(group.condition) else "")


def ratio_points(report: Report) -> list[dict]:
    """top1_vs_ratio.csv: the plotted points, in percent."""
    out = []
    for group in report.groups:
        real_only = group.condition in (mixing.REAL_ONLY, mixing.ZERO_SHOT)  # flat lines
        for ratio in [0.0, 1.0] if real_only else [group.infeasible_ratio]:
            out.append({"dataset": group.dataset, "setting": group.setting,
                        "attribute": group.condition if real_only else _series_name(group),
                        "infeasible_ratio": ratio, "top1_mean": _pct(group.mean, CSV_PERCENT_DIGITS),
                        "top1_std": _pct(group.std, CSV_PERCENT_DIGITS), "n": len(group.runs)})
    return out


def plot(report: Report, path: Path) -> None:
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
            if group.condition in (mixing.REAL_ONLY, mixing.ZERO_SHOT):
                label = group.condition + (f" ({group.setting})" if group.setting else "")
                line = axes.axhline(100 * group.mean, color="black" if group.condition == mixing.REAL_ONLY else "grey",
                                    linestyle="--", label=label)
                if not math.isnan(group.std):
                    axes.axhspan(100 * (group.mean - group.std), 100 * (group.mean + group.std),
                                 color=line.get_color(), alpha=0.12)
            else:
                series.setdefault((_series_name(group), group.setting), []).append(group)
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
    io.write_text_atomic(out / "report.md", markdown(report))
    io.write_csv(out / "report.csv", csv_rows(report))
    io.write_csv(out / "top1_vs_ratio.csv", ratio_points(report),
                 ["dataset", "setting", "attribute", "infeasible_ratio", "top1_mean", "top1_std", "n"])
    plot(report, out / "top1_vs_ratio.png")
    return [out / name for name in FILES]
