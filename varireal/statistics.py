"""Statistics over replicated evaluations: numbers in, numbers out.

A condition is evaluated once per training seed (a replicate). Two conditions are compared seed by seed
(the same `train.seed` in both): the training seeds are the replicate unit, so the inference is on the
per-seed accuracy differences, a paired t-test and t interval over seeds, with a two-level bootstrap
(seeds, then test images) beside it. Equivalence within a margin is TOST on the same differences; the
p-values of a report's comparisons are Holm-corrected; a verdict says which of the three applies.
McNemar's exact test per seed is a diagnostic only: it conditions on the trained model and so ignores
the seed-to-seed spread that dominates here. Nothing here knows where the numbers were recorded
(MLflow, files) or how they are shown. Accuracies and margins are fractions (0.01 = 1 point).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # significance level of every test here, and 1 - the intervals' confidence
TARGET_POWER = 0.8  # the power the seed counts are planned for
MAX_SEEDS = 1000  # seed counts are searched up to here; beyond it, "more than MAX_SEEDS"

DIFFERENT, EQUIVALENT, INCONCLUSIVE, NOT_ENOUGH_SEEDS = "different", "equivalent", "inconclusive", "not enough seeds"
VERDICTS = (DIFFERENT, EQUIVALENT, INCONCLUSIVE, NOT_ENOUGH_SEEDS)


@dataclass(frozen=True)
class Replicate:
    """One seed of a condition: its accuracy and, when known, whether it got each test image right."""

    accuracy: float
    images: tuple[str, ...] | None = None  # the test images, in the order of `correct`
    correct: np.ndarray | None = None  # per test image: prediction == label


def mean(accuracies: Sequence[float]) -> float:
    return float(np.array(accuracies).mean())


def sample_std(accuracies: Sequence[float]) -> float:
    """Sample std (ddof 1) over seeds; NaN with a single seed, which has no spread to estimate."""
    return float(np.array(accuracies).std(ddof=1)) if len(accuracies) > 1 else math.nan


# --- seed level: the verdict's tests ----------------------------------------------------------------------

def _constant(differences: np.ndarray) -> bool:
    """Every seed gave the same difference: no spread, so t statistics are infinite (or 0/0)."""
    return bool(np.ptp(differences) <= 1e-12)


def paired_t(differences: Sequence[float], alpha: float = ALPHA) -> tuple[float, tuple[float, float]]:
    """Two-sided one-sample t-test of the per-seed differences against 0 (the paired t-test of the two
    conditions' accuracies) and the (1 - alpha) t interval of their mean. Needs two or more seeds."""
    from scipy import stats

    differences = np.asarray(differences, dtype=float)
    middle = float(differences.mean())
    if _constant(differences):  # no spread: the mean is exact
        return (1.0 if abs(middle) <= 1e-12 else 0.0), (middle, middle)
    result = stats.ttest_1samp(differences, 0.0)
    low, high = result.confidence_interval(1 - alpha)
    return float(result.pvalue), (float(low), float(high))


def tost(differences: Sequence[float], margin: float) -> float:
    """Equivalence p-value, two one-sided t-tests on the per-seed differences: the larger of the p-values
    of H0 mean <= -margin and H0 mean >= +margin. Small means the mean lies within (-margin, +margin)."""
    from scipy import stats

    differences = np.asarray(differences, dtype=float)
    if _constant(differences):
        return 0.0 if abs(differences.mean()) < margin else 1.0
    above = stats.ttest_1samp(differences, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(differences, margin, alternative="less").pvalue
    return float(max(above, below))


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate at alpha over all the given tests)."""
    if len(p_values) < 2:  # a family of one: nothing to adjust (and multipletests runs gc.collect, 0.1 s)
        return [float(p) for p in p_values]
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(p_values), alpha=alpha, method="holm")[1]]


def verdict(paired_seeds: int, holm_p: float | None, tost_p: float | None, alpha: float = ALPHA) -> str:
    """different: the Holm-adjusted paired p < alpha; equivalent (within the margin TOST used): TOST p < alpha
    and not different; inconclusive: neither; not enough seeds: fewer than two paired seeds."""
    if paired_seeds < 2 or holm_p is None or tost_p is None:
        return NOT_ENOUGH_SEEDS
    if holm_p < alpha:
        return DIFFERENT
    if tost_p < alpha:
        return EQUIVALENT
    return INCONCLUSIVE


# --- power: how many seeds a decision needs ---------------------------------------------------------------

def _nct_cdf(x: float, df: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """scipy's noncentral t cdf; it returns NaN far in a tail (large |nc|), where the cdf is 0 or 1."""
    import warnings

    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = stats.nct.cdf(x, df, nc)
    return np.where(np.isnan(values), (x > np.asarray(nc)).astype(float), values)


def power_difference(n: np.ndarray, difference: float, sd: float, alpha: float = ALPHA) -> np.ndarray:
    """Power of the two-sided paired t-test with n seeds when the true mean difference is `difference`
    and the per-seed differences have sd `sd` (exact, noncentral t)."""
    from scipy import stats

    n = np.asarray(n, dtype=float)
    df, nc = n - 1, difference / max(sd, 1e-12) * np.sqrt(n)
    critical = stats.t.ppf(1 - alpha / 2, df)
    return 1 - _nct_cdf(critical, df, nc) + _nct_cdf(-critical, df, nc)


def power_equivalence(n: np.ndarray, margin: float, sd: float, difference: float = 0.0,
                      alpha: float = ALPHA) -> np.ndarray:
    """Power of TOST with n seeds at a true mean difference `difference`, by the noncentral-t approximation
    P(T_lower > t) - P(T_upper > -t) (as in PowerTOST's method "nct"; it ignores that both statistics share
    one sd estimate, so it is slightly conservative at small n). Zero where it would be negative."""
    from scipy import stats

    n = np.asarray(n, dtype=float)
    df, scale = n - 1, np.sqrt(n) / max(sd, 1e-12)
    critical = stats.t.ppf(1 - alpha, df)
    power = _nct_cdf(-critical, df, (difference - margin) * scale) - _nct_cdf(critical, df, (difference + margin) * scale)
    return np.maximum(power, 0.0)


def _smallest_n(power) -> float:
    """The smallest n in 2..MAX_SEEDS with power(n) >= TARGET_POWER (power grows with n), or inf: doubling,
    then bisection, so a comparison costs a few dozen noncentral-t evaluations rather than MAX_SEEDS."""
    def enough(n: int) -> bool:
        return bool(power(np.array([n]))[0] >= TARGET_POWER)

    low, high = 1, 2  # enough(low) is taken as false: one seed has no spread to test with
    while not enough(high):
        if high >= MAX_SEEDS:
            return math.inf
        low, high = high, min(2 * high, MAX_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return float(high)


def seeds_for_equivalence(sd: float, margin: float, alpha: float = ALPHA) -> float:
    """Paired seeds TOST needs for power TARGET_POWER within +-margin if the true difference is 0 and the
    per-seed differences spread by sd; inf beyond MAX_SEEDS."""
    return _smallest_n(lambda n: power_equivalence(n, margin, sd, 0.0, alpha))


def seeds_for_difference(difference: float, sd: float, alpha: float = ALPHA) -> float:
    """Paired seeds the two-sided paired t-test at level alpha needs for power TARGET_POWER if the true
    difference is the observed one and the per-seed differences spread by sd; inf beyond MAX_SEEDS. For a
    Holm-corrected family of k tests, alpha / k plans for the strictest step (Bonferroni: conservative)."""
    if abs(difference) <= 1e-12:
        return math.inf
    return _smallest_n(lambda n: power_difference(n, difference, sd, alpha))


# --- image level: the bootstrap's second level and McNemar's diagnostic ------------------------------------

def discordant_pairs(reference_correct: np.ndarray, group_correct: np.ndarray) -> tuple[int, int]:
    """McNemar's discordant pairs: (reference right and group wrong, reference wrong and group right)."""
    b = int(np.sum(reference_correct & ~group_correct))
    c = int(np.sum(~reference_correct & group_correct))
    return b, c


def mcnemar_exact_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: b ~ Binomial(b + c, 1/2) when both conditions are equally accurate."""
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def two_level_bootstrap_ci(reference: np.ndarray, group: np.ndarray, resamples: int, seed: int,
                           alpha: float = ALPHA) -> tuple[float, float]:
    """(1 - alpha) percentile interval of the mean over seeds of the accuracy difference (group - reference).
    Rows are seeds, columns test images. Each resample draws seeds with replacement, then test images with
    replacement (one draw for all drawn seeds and both conditions: they share the test set), and takes the
    mean of the per-image differences over the drawn seeds and images."""
    rng = np.random.default_rng(seed)
    differences = group.astype(float) - reference.astype(float)  # seeds x images, -1, 0 or 1
    seeds, images = differences.shape
    seed_counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples)
    image_counts = rng.multinomial(images, np.full(images, 1 / images), size=resamples)
    means = ((seed_counts @ differences) * image_counts).sum(axis=1) / (seeds * images)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def aligned_correctness(replicates: Sequence[Replicate]) -> list[np.ndarray] | None:
    """Each replicate's per-image correctness in the order of the first one's images; None if any lacks
    predictions or they were made on different test images."""
    if any(replicate.correct is None for replicate in replicates):
        return None
    order = replicates[0].images
    out = []
    for replicate in replicates:
        if replicate.images == order:
            out.append(replicate.correct)
        elif sorted(replicate.images) == sorted(order) and len(set(order)) == len(order):
            position = {image: i for i, image in enumerate(replicate.images)}
            out.append(replicate.correct[[position[image] for image in order]])
        else:
            return None
    return out


# --- one comparison -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairedDifference:
    """A group against a reference, difference = group - reference, paired per seed. The verdict needs the
    report's other comparisons (Holm), so it is not here: see `holm` and `verdict`."""

    paired_seeds: list[str]
    difference: float  # mean of per-seed accuracy differences (difference of means when no seed pairs)
    differences: tuple[float, ...] = ()  # per paired seed, in paired_seeds' order
    sd: float = math.nan  # sample sd of the per-seed differences
    p_value: float | None = None  # paired t-test over seeds, two-sided
    ci: tuple[float, float] | None = None  # t interval of the mean difference over seeds
    tost_p: float | None = None  # TOST against +-margin over seeds
    margin: float = math.nan
    bootstrap_ci: tuple[float, float] | None = None  # two-level bootstrap (seeds, then test images)
    mcnemar: tuple[tuple[int, int, float], ...] | None = None  # per paired seed: b, c, exact p (diagnostic)
    why_no_test: str = ""


def paired_difference(group: Mapping[str, Replicate], reference: Mapping[str, Replicate], resamples: int,
                      seed: int, margin: float, alpha: float = ALPHA) -> PairedDifference:
    """Compare two conditions given as {seed: replicate}; seeds in both are paired, in group's seed order.
    resamples and seed are the bootstrap's; margin is the equivalence margin (a fraction)."""
    seeds = [s for s in group if s in reference]
    if not seeds:
        return PairedDifference([], mean([r.accuracy for r in group.values()]) -
                                mean([r.accuracy for r in reference.values()]), margin=margin,
                                why_no_test="no seed in common: difference of means, no paired test")
    differences = np.array([group[s].accuracy - reference[s].accuracy for s in seeds])
    found = {"paired_seeds": seeds, "difference": float(differences.mean()),
             "differences": tuple(float(d) for d in differences), "margin": margin}
    notes = []
    if len(seeds) >= 2:
        sd = float(differences.std(ddof=1))
        p_value, ci = paired_t(differences, alpha)
        found.update(sd=sd, p_value=p_value, ci=ci, tost_p=tost(differences, margin))
    else:
        notes.append("one paired seed: no spread over seeds, no test")
    aligned = aligned_correctness([reference[s] for s in seeds] + [group[s] for s in seeds])
    if aligned is None:
        notes.append("predictions missing or on different test images: no bootstrap, no McNemar")
    else:
        reference_correct, group_correct = np.stack(aligned[:len(seeds)]), np.stack(aligned[len(seeds):])
        per_seed = [discordant_pairs(r, g) for r, g in zip(reference_correct, group_correct)]
        found.update(mcnemar=tuple((b, c, mcnemar_exact_p(b, c)) for b, c in per_seed),
                     bootstrap_ci=two_level_bootstrap_ci(reference_correct, group_correct, resamples, seed, alpha))
    return PairedDifference(**found, why_no_test="; ".join(notes))
