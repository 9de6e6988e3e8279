"""The report's files (FILES): the table, the top-1 against the ratio, each comparison's difference and the
feasibility gap per attribute against the setting (gaps.png: a study over fine-tuning or backbone strength).

Accuracies are fractions up to here; these files show them in percent (points for differences).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from varireal import io, mixing, statistics
from varireal.statistics import ALPHA

from varireal_pipeline.report.grouping import Comparison, Group, Report

FILES = ("report.md", "report.csv", "top1_vs_ratio.png", "top1_vs_ratio.csv", "differences.png", "gaps.png")
CSV_COLUMNS = ("dataset", "attribute", "condition", "infeasible_ratio", "setting", "n_seeds", "seeds", "top1_mean_pct",
               "top1_std_pct", "reference", "n_paired_seeds", "paired_seeds", "diff_pct", "diff_per_seed_pct",
               "sd_diff_pct", "ci_low_pct", "ci_high_pct", "p_paired_t", "p_holm", "tost_p", "margin_pct", "verdict",
               "bootstrap_low_pct", "bootstrap_high_pct", "seeds_for_equivalence", "seeds_for_difference",
               "seeds_needed", "mcnemar_bc_per_seed", "mcnemar_p_per_seed", "note")
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


def verdict_label(comparison: Comparison, margin: float) -> str:
    if comparison.verdict == statistics.EQUIVALENT:
        return f"equivalent within ±{_csv_percent(margin):g} pp"
    return comparison.verdict


def _seeds(value: float | None) -> str:
    if value is None:
        return ""
    return f">{statistics.MAX_SEEDS}" if math.isinf(value) else str(int(value))


def _p(value: float | None) -> str:
    return "" if value is None else f"{value:.{CSV_P_DIGITS}g}"


def csv_rows(report: Report) -> list[dict]:
    """report.csv: every figure of the report. Accuracies and differences in percent (points)."""
    out = []
    for group, comparison in table(report):
        row = dict.fromkeys(CSV_COLUMNS, "")
        row.update(dataset=group.dataset, attribute=group.attribute, condition=group.label,
                   infeasible_ratio="" if group.infeasible_ratio is None else group.infeasible_ratio,
                   setting=group.setting, n_seeds=len(group.runs), seeds=" ".join(group.runs),
                   top1_mean_pct=_pct(group.mean, CSV_PERCENT_DIGITS), top1_std_pct=_pct(group.std, CSV_PERCENT_DIGITS))
        if comparison is not None:
            result = comparison.result
            row.update(reference=comparison.reference.label, n_paired_seeds=len(result.paired_seeds),
                       paired_seeds=" ".join(result.paired_seeds),
                       diff_pct=_pct(result.difference, CSV_PERCENT_DIGITS),
                       diff_per_seed_pct=" ".join(_pct(d, CSV_PERCENT_DIGITS) for d in result.differences),
                       sd_diff_pct=_pct(result.sd, CSV_PERCENT_DIGITS), p_paired_t=_p(result.p_value),
                       p_holm=_p(comparison.holm_p), tost_p=_p(result.tost_p),
                       margin_pct=_pct(report.margin, CSV_PERCENT_DIGITS),
                       verdict=verdict_label(comparison, report.margin),
                       seeds_for_equivalence=_seeds(comparison.seeds_for_equivalence),
                       seeds_for_difference=_seeds(comparison.seeds_for_difference),
                       seeds_needed=_seeds(comparison.seeds_needed) if comparison.verdict == statistics.INCONCLUSIVE
                       else "", note=result.why_no_test)
            if result.ci is not None:
                row.update(ci_low_pct=_pct(result.ci[0], CSV_PERCENT_DIGITS),
                           ci_high_pct=_pct(result.ci[1], CSV_PERCENT_DIGITS))
            if result.bootstrap_ci is not None:
                row.update(bootstrap_low_pct=_pct(result.bootstrap_ci[0], CSV_PERCENT_DIGITS),
                           bootstrap_high_pct=_pct(result.bootstrap_ci[1], CSV_PERCENT_DIGITS))
            if result.mcnemar is not None:
                row.update(mcnemar_bc_per_seed=" ".join(f"{b}/{c}" for b, c, _ in result.mcnemar),
                           mcnemar_p_per_seed=" ".join(_p(p) for _, _, p in result.mcnemar))
        out.append(row)
    return out


def _interval(interval: tuple[float, float] | None) -> str:
    if interval is None or not _shown(interval[0]):
        return ""
    return f"[{_csv_percent(interval[0]):+.2f}, {_csv_percent(interval[1]):+.2f}]"


def _markdown_cells(group: Group, comparison: Comparison | None, margin: float) -> list[str]:
    """The comparison's cells of a row of report.md: vs, Δ, its t interval, Holm p, TOST p, verdict, the
    two-level bootstrap interval and McNemar's p per seed."""
    if comparison is None:
        return [""] * 8
    result = comparison.result
    diff = f"{_csv_percent(result.difference):+.2f}" if _shown(result.difference) else ""
    if not result.paired_seeds:
        diff += " (unpaired)"
    holm_p = "" if comparison.holm_p is None else f"{_csv_p(comparison.holm_p):.2g}"
    tost_p = "" if result.tost_p is None else f"{_csv_p(result.tost_p):.2g}"
    mcnemar = "" if result.mcnemar is None else " ".join(f"{_csv_p(p):.2g}" for _, _, p in result.mcnemar)
    return [comparison.reference.label, diff, _interval(result.ci), holm_p, tost_p,
            f"**{verdict_label(comparison, margin)}**", _interval(result.bootstrap_ci), mcnemar]


def _name(comparison: Comparison) -> str:
    setting = f" ({comparison.group.setting})" if comparison.group.setting else ""
    return (f"{comparison.group.dataset} / {comparison.group.attribute} / {comparison.group.label}{setting} "
            f"vs {comparison.reference.label}")


def _more(comparison: Comparison) -> float:
    """More train.seed values the comparison's plan asks for; at least one when the planned number is already
    there (the plan's power is 0.8, so one result in five falls short)."""
    return max(comparison.seeds_needed - len(comparison.result.paired_seeds), 1)


def more_seeds(report: Report) -> int | None:
    """More train.seed values that would make every inconclusive comparison decisive (at the planned power),
    leaving out those no number of seeds up to MAX_SEEDS settles; None if there are none to plan for."""
    wanted = [_more(c) for c in report.comparisons
              if c.verdict == statistics.INCONCLUSIVE and c.seeds_needed is not None]
    finite = [int(n) for n in wanted if math.isfinite(n)]
    return max(finite) if finite else None


def power_lines(report: Report) -> list[str]:
    """Under the table: how many seeds each inconclusive comparison needs, and how many more to queue."""
    margin = f"±{_csv_percent(report.margin):g} pp"
    lines = []
    for comparison in report.comparisons:
        result = comparison.result
        if comparison.verdict == statistics.NOT_ENOUGH_SEEDS:
            lines.append(f"- {_name(comparison)}: {len(result.paired_seeds)} paired seed(s); a verdict needs 2 "
                         "or more seeds run in both conditions (the same `train.seed` values).")
        elif comparison.verdict == statistics.INCONCLUSIVE:
            observed = f"the observed Δ of {_csv_percent(result.difference):+.2f} pp"
            difference = (f"{observed} would be shown `different` by {_seeds(comparison.seeds_for_difference)} seeds"
                          if math.isfinite(comparison.seeds_for_difference)
                          else f"{observed} is too small to show as `different` with {statistics.MAX_SEEDS} seeds")
            queue = (f"queue {int(_more(comparison))} more `train.seed` values" if math.isfinite(_more(comparison))
                     else f"no number of seeds up to {statistics.MAX_SEEDS} settles it")
            lines.append(
                f"- {_name(comparison)}: inconclusive with {len(result.paired_seeds)} seeds (sd of the per-seed Δ "
                f"{_csv_percent(result.sd):.2f} pp). Equivalence within {margin} needs "
                f"{_seeds(comparison.seeds_for_equivalence)} seeds if the true Δ is 0; {difference}: {queue}.")
    if not lines:
        return []
    more = more_seeds(report)
    head = [f"Seeds for a decision, planned for power {statistics.TARGET_POWER:g} from each comparison's observed "
            "sd of the per-seed Δ (itself a rough estimate from so few seeds): equivalence by TOST at "
            f"α {statistics.ALPHA:g}, a difference by the paired t-test at α {statistics.ALPHA:g} / "
            f"{sum(c.holm_p is not None for c in report.comparisons)} (the strictest step of Holm's correction):", ""]
    tail = ["", f"**Queue {more} more `train.seed` values** (for every condition) to settle every inconclusive "
            "comparison that a feasible number of seeds can settle."] if more else []
    return head + lines + tail


def markdown(report: Report) -> str:
    counts = report.verdicts()
    margin = f"±{_csv_percent(report.margin):g} pp"
    lines = ["# VariReal report", "",
             f"{report.runs_read} eval run(s) read, {len(report.groups)} group(s), "
             f"{len(report.comparisons)} comparison(s): {counts[statistics.DIFFERENT]} different, "
             f"{counts[statistics.EQUIVALENT]} equivalent within {margin}, "
             f"{counts[statistics.INCONCLUSIVE]} inconclusive, {counts[statistics.NOT_ENOUGH_SEEDS]} "
             "with not enough seeds.", ""]
    rows = table(report)
    with_setting = any(group.setting for group in report.groups)
    for dataset in dict.fromkeys(group.dataset for group in report.groups):
        lines += [f"## {dataset}", "",
                  "| attribute | condition |" + (" setting |" if with_setting else "") +
                  " seeds | top-1 % (mean ± std) | vs | Δ pp | 95% CI over seeds | p (Holm) | TOST p | verdict |"
                  " two-level bootstrap 95% CI | McNemar p per seed |",
                  "|---|---|" + ("---|" if with_setting else "") + "--:|--:|---|--:|--:|--:|--:|---|--:|--:|"]
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
            lines.append("| " + " | ".join(cells + _markdown_cells(group, comparison, report.margin)) + " |")
        lines.append("")
    power = power_lines(report)
    if power:
        lines += ["## More seeds", ""] + power + [""]
    lines += [
        "## Method", "",
        "- A group is the set of eval runs that differ only in `train.seed` (and `tracking.*`); its seeds are "
        "replicates. Real-only runs ignore `prompt.*`, `edit.*`, `score.*` and the mix's attribute, ratio and "
        "filter, which cannot change a model trained on real images only; they are the baseline of every "
        "condition of their dataset trained with the same params.",
        "- top-1: the eval run's `top1` metric, mean and sample std (ddof 1) over seeds, in %.",
        "- Δ: the mean over paired seeds (the same `train.seed` in both groups) of the per-seed top-1 difference, "
        "group minus reference, in percentage points; \"unpaired\" marks a difference of means where no seed "
        "pairs (no test then). The training seed is the replicate: every test below is over the per-seed Δs.",
        f"- 95% CI over seeds: the t interval of the mean Δ; p: the paired t-test over seeds (scipy), "
        f"Holm-adjusted over the report's {len(report.comparisons)} comparisons (statsmodels' multipletests).",
        f"- TOST p: two one-sided paired t-tests that the true Δ lies within {margin} (the margin, `--margin`); "
        "not adjusted for multiplicity.",
        f"- Verdict: **different** if the Holm-adjusted p < {ALPHA}; **equivalent within {margin}** if not "
        f"different and TOST p < {ALPHA}; **inconclusive** otherwise (which is not \"no difference\": the "
        "seeds cannot tell); **not enough seeds** with fewer than 2 paired seeds.",
        f"- Two-level bootstrap 95% CI ({report.resamples} resamples, seed {report.seed}): each resample draws "
        "the paired seeds with replacement, then the test images with replacement (one draw for both groups "
        "and every drawn seed), and takes the mean Δ. With 3 seeds it is narrower than the t interval (only 10 "
        "distinct seed draws); it is shown beside the verdict, not used by it.",
        "- McNemar p per seed: exact two-sided McNemar test (scipy.stats.binomtest) of one seed's two models "
        "on the same test images, in seed order; a diagnostic of test-set noise only: it ignores the "
        "seed-to-seed spread, so it is far more often small than the verdict's test.",
        "- More seeds: the smallest number of paired seeds at which TOST would show equivalence with power "
        f"{statistics.TARGET_POWER:g} if the true Δ were 0 (noncentral-t approximation), and at which the paired "
        f"t-test at α / (number of tests) would show the observed Δ with power {statistics.TARGET_POWER:g} "
        "(exact noncentral t), both with the observed sd of the per-seed Δ.",
        "- top1_vs_ratio.csv / .png: top-1 mean and std (%) per attribute against the infeasible ratio; the "
        "real-only baseline appears as attribute `real-only` at ratios 0 and 1 (a flat line). differences.png: "
        f"each comparison's Δ with its 95% t interval over seeds, the per-seed Δs as dots and the {margin} margin "
        "shaded.",
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


VERDICT_COLORS = {statistics.DIFFERENT: "tab:red", statistics.EQUIVALENT: "tab:green",
                  statistics.INCONCLUSIVE: "tab:gray", statistics.NOT_ENOUGH_SEEDS: "tab:gray"}


def plot_differences(report: Report, path: Path) -> None:
    """Each comparison's Δ with its 95% t interval over seeds, the per-seed Δs and the margin, by verdict."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    datasets = list(dict.fromkeys(c.group.dataset for c in report.comparisons)) or ["no comparisons"]
    tallest = max([sum(c.group.dataset == d for c in report.comparisons) for d in datasets] + [1])
    figure = Figure(figsize=(7 * len(datasets), 1.5 + 0.35 * tallest))
    FigureCanvasAgg(figure)
    margin = 100 * report.margin
    for axes, dataset in zip(figure.subplots(1, len(datasets), squeeze=False)[0], datasets):
        shown = [c for c in report.comparisons if c.group.dataset == dataset]
        axes.axvspan(-margin, margin, color="tab:green", alpha=0.12)
        axes.axvline(0, color="black", linewidth=0.8)
        for y, comparison in enumerate(shown):
            result, color = comparison.result, VERDICT_COLORS[comparison.verdict]
            axes.plot([100 * d for d in result.differences], [y] * len(result.differences), "o", color=color,
                      alpha=0.35, markersize=4)
            if result.ci is not None:
                low, high = 100 * result.ci[0], 100 * result.ci[1]
                axes.plot([low, high], [y, y], color=color, linewidth=2)
            axes.plot([100 * result.difference], [y], "D", color=color)
        axes.set_yticks(range(len(shown)), [_name(c).split(" / ", 1)[1] for c in shown], fontsize="small")
        axes.invert_yaxis()
        axes.set(title=dataset, xlabel="Δ top-1 (pp): mean, 95% t interval over seeds, per-seed dots")
        handles = [Line2D([], [], color=color, marker="D", label=name) for name, color in VERDICT_COLORS.items()
                   if name != statistics.NOT_ENOUGH_SEEDS]
        handles[1].set_label(f"equivalent within ±{margin:g} pp (shaded)")
        axes.legend(handles=handles, fontsize="small", loc="best")
    figure.savefig(path, dpi=120, bbox_inches="tight")


def feasibility_gaps(report: Report) -> list[Comparison]:
    """The infeasible-vs-feasible comparisons (real + synthetic, or synthetic only): the feasibility gap of an
    attribute in one setting."""
    return [c for c in report.comparisons
            if mixing.synthetic_kind(c.group.condition) == "infeasible"
            and mixing.synthetic_kind(c.reference.condition) == "feasible"
            and mixing.is_synthetic_only(c.group.condition) == mixing.is_synthetic_only(c.reference.condition)]


def _setting_order(setting: str) -> tuple:
    """Settings in the order of their values, numbers as numbers ("train.lr=0.0001" before "train.lr=0.001")."""
    def value(text: str):
        try:
            return (0, float(text), "")
        except ValueError:
            return (1, 0.0, text)

    return tuple((key, value(text)) for key, _, text in (part.partition("=") for part in setting.split(", ")))


def plot_gaps(report: Report, path: Path) -> None:
    """The feasibility gap (infeasible - feasible top-1, pp) per attribute against the setting, with its 95% t
    interval over seeds and the equivalence margin: where feasibility matters and where it does not."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    gaps = feasibility_gaps(report)
    datasets = list(dict.fromkeys(c.group.dataset for c in gaps)) or ["no infeasible-vs-feasible comparisons"]
    settings = sorted({c.group.setting for c in gaps}, key=_setting_order)
    figure = Figure(figsize=(max(6.0, 1.2 * len(settings) + 3) * len(datasets), 5))
    FigureCanvasAgg(figure)
    margin = 100 * report.margin
    for axes, dataset in zip(figure.subplots(1, len(datasets), squeeze=False)[0], datasets):
        shown = [c for c in gaps if c.group.dataset == dataset]
        attributes = list(dict.fromkeys(_series_name(c.group) for c in shown))
        axes.axhspan(-margin, margin, color="tab:green", alpha=0.12, label=f"±{margin:g} pp (equivalence margin)")
        axes.axhline(0, color="black", linewidth=0.8)
        for index, attribute in enumerate(attributes):
            offset = (index - (len(attributes) - 1) / 2) * 0.12  # side by side within a setting
            members = sorted((c for c in shown if _series_name(c.group) == attribute),
                             key=lambda c: settings.index(c.group.setting))
            xs = [settings.index(c.group.setting) + offset for c in members]
            ys = [100 * c.result.difference for c in members]
            errors = [[0, 0] if c.result.ci is None else
                      [100 * (c.result.difference - c.result.ci[0]), 100 * (c.result.ci[1] - c.result.difference)]
                      for c in members]
            axes.errorbar(xs, ys, yerr=np.array(errors).T, marker="o", capsize=3, label=attribute)
        axes.set_xticks(range(len(settings)), [s.replace(", ", "\n") or "(one setting)" for s in settings],
                        fontsize="small")
        axes.set(title=dataset, ylabel="feasibility gap: infeasible - feasible top-1 (pp)")
        axes.legend(fontsize="small", loc="best")
    figure.savefig(path, dpi=120, bbox_inches="tight")


def write(report: Report, out: Path) -> list[Path]:
    """The report's files (FILES) in out; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    io.write_text_atomic(out / "report.md", markdown(report))
    io.write_csv(out / "report.csv", csv_rows(report))
    io.write_csv(out / "top1_vs_ratio.csv", ratio_points(report),
                 ["dataset", "setting", "attribute", "infeasible_ratio", "top1_mean", "top1_std", "n"])
    plot(report, out / "top1_vs_ratio.png")
    plot_differences(report, out / "differences.png")
    plot_gaps(report, out / "gaps.png")
    return [out / name for name in FILES]
