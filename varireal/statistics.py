"""Statistics over replicated evaluations: numbers in, numbers out.

A condition is evaluated once per training seed (a replicate). Two conditions are compared seed by seed on
the same test images: the mean per-seed accuracy difference, McNemar's exact test on the per-image
predictions pooled over the paired seeds, and a percentile bootstrap over test images. Nothing here knows
where the numbers were recorded (MLflow, files) or how they are shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # significance level of every test here


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


def discordant_pairs(reference_correct: np.ndarray, group_correct: np.ndarray) -> tuple[int, int]:
    """McNemar's discordant pairs: (reference right and group wrong, reference wrong and group right)."""
    b = int(np.sum(reference_correct & ~group_correct))
    c = int(np.sum(~reference_correct & group_correct))
    return b, c


def mcnemar_exact_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: b ~ Binomial(b + c, 1/2) when both conditions are equally accurate."""
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def bootstrap_difference_ci(reference: np.ndarray, group: np.ndarray, resamples: int,
                            seed: int) -> tuple[float, float]:
    """95% percentile interval of mean-over-seeds accuracy difference (group - reference), resampling test
    images: rows are seeds, columns test images; one draw of images serves every seed and both sides."""
    from scipy.stats import bootstrap

    per_image = group.mean(axis=0) - reference.mean(axis=0)  # the statistic is linear: average seeds first
    result = bootstrap((per_image,), np.mean, n_resamples=resamples, method="percentile", confidence_level=0.95,
                       vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


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


@dataclass(frozen=True)
class PairedDifference:
    """A group against a reference, difference = group - reference, paired per seed."""

    paired_seeds: list[str]
    difference: float  # mean of per-seed accuracy differences (difference of means when no seed pairs)
    b: int | None = None  # pooled over paired seeds: reference right, group wrong
    c: int | None = None  # ... reference wrong, group right
    p_value: float | None = None  # McNemar's exact test on b and c
    ci: tuple[float, float] | None = None  # bootstrap 95% interval of the difference
    why_no_test: str = ""

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def paired_difference(group: Mapping[str, Replicate], reference: Mapping[str, Replicate], resamples: int,
                      seed: int) -> PairedDifference:
    """Compare two conditions given as {seed: replicate}; seeds in both are paired, in group's seed order.
    resamples and seed are the bootstrap's."""
    seeds = [s for s in group if s in reference]
    if not seeds:
        return PairedDifference([], mean([r.accuracy for r in group.values()]) -
                                mean([r.accuracy for r in reference.values()]),
                                why_no_test="no seed in common: difference of means, no paired test")
    difference = float(np.mean([group[s].accuracy - reference[s].accuracy for s in seeds]))
    aligned = aligned_correctness([reference[s] for s in seeds] + [group[s] for s in seeds])
    if aligned is None:
        return PairedDifference(seeds, difference, why_no_test="predictions missing or on different test images")
    reference_correct, group_correct = np.stack(aligned[:len(seeds)]), np.stack(aligned[len(seeds):])
    b, c = discordant_pairs(reference_correct, group_correct)
    return PairedDifference(seeds, difference, b, c, mcnemar_exact_p(b, c),
                            bootstrap_difference_ci(reference_correct, group_correct, resamples, seed))
