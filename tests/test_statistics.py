"""varireal.statistics against references computed another way, and in simulated worlds with a known effect."""

import math

import numpy as np
import pytest
from scipy import stats

from varireal import statistics
from varireal.statistics import Replicate

TEST_IMAGES = 1500  # as in the embedded world's test split


def test_paired_t_is_scipys_paired_test_and_t_interval():
    rng = np.random.default_rng(1)
    for seeds in (2, 3, 5, 12):
        group, reference = rng.normal(0.55, 0.04, seeds), rng.normal(0.53, 0.04, seeds)
        p, (low, high) = statistics.paired_t(group - reference)
        assert p == pytest.approx(stats.ttest_rel(group, reference).pvalue, rel=1e-10)
        differences = group - reference
        half = stats.t.ppf(0.975, seeds - 1) * differences.std(ddof=1) / math.sqrt(seeds)
        assert (low, high) == pytest.approx((differences.mean() - half, differences.mean() + half), rel=1e-10)
    # Seeds that agree exactly: no spread, the mean is exact.
    assert statistics.paired_t([0.02, 0.02, 0.02]) == (0.0, (0.02, 0.02))
    assert statistics.paired_t([0.0, 0.0])[0] == 1.0


def test_tost_is_statsmodels_ttost_paired():
    from statsmodels.stats.weightstats import ttost_paired

    rng = np.random.default_rng(2)
    for seeds, shift, margin in [(3, 0.0, 0.01), (4, 0.005, 0.01), (5, -0.02, 0.01), (30, 0.001, 0.01),
                                 (8, 0.0, 0.03)]:
        group = rng.normal(0.5 + shift, 0.02, seeds)
        reference = group - shift + rng.normal(0, 0.01, seeds)
        expected = ttost_paired(group, reference, -margin, margin)[0]
        assert statistics.tost(group - reference, margin) == pytest.approx(expected, rel=1e-10)


def test_holm_against_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running maximum: 0.04 -> 0.06.
    assert statistics.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert statistics.holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # capped at 1 only when above
    assert statistics.holm([0.7, 0.9]) == pytest.approx([1.0, 1.0])
    assert statistics.holm([0.02]) == [0.02]
    assert statistics.holm([]) == []


def test_verdicts():
    assert statistics.verdict(3, 0.01, 0.9) == "different"
    assert statistics.verdict(3, 0.01, 0.01) == "different"  # a difference inside the margin is still one
    assert statistics.verdict(3, 0.2, 0.01) == "equivalent"
    assert statistics.verdict(3, 0.2, 0.3) == "inconclusive"
    assert statistics.verdict(1, None, None) == "not enough seeds"
    assert statistics.verdict(0, None, None) == "not enough seeds"


def test_power_of_the_paired_test_is_statsmodels():
    from statsmodels.stats.power import TTestPower

    n = np.arange(2, 40)
    for difference, sd in [(0.02, 0.03), (-0.012, 0.02), (0.16, 0.04)]:
        expected = TTestPower().power(abs(difference) / sd, n, 0.05, alternative="two-sided")
        finite = np.isfinite(expected)  # statsmodels' noncentral t gives NaN where the power is 1
        assert finite[:2].all()
        assert statistics.power_difference(n, difference, sd)[finite] == pytest.approx(expected[finite], abs=1e-9)
        needed = statistics.seeds_for_difference(difference, sd)
        assert TTestPower().power(abs(difference) / sd, needed, 0.05) >= 0.8 > \
            TTestPower().power(abs(difference) / sd, needed - 1, 0.05)
    assert statistics.seeds_for_difference(0.0, 0.02) == math.inf


def test_power_of_tost_against_a_simulation():
    """The noncentral-t approximation against 20000 simulated TOSTs per point (standard error 0.003)."""
    rng = np.random.default_rng(3)
    margin = 0.01
    for seeds, sd, truth in [(10, 0.01, 0.0), (36, 0.02, 0.0), (20, 0.01, 0.004), (15, 0.015, 0.002)]:
        draws = rng.normal(truth, sd, (20000, seeds))
        mean, error = draws.mean(axis=1), draws.std(axis=1, ddof=1) / math.sqrt(seeds)
        critical = stats.t.ppf(0.95, seeds - 1)
        simulated = np.mean(((mean + margin) / error > critical) & ((mean - margin) / error < -critical))
        approximated = statistics.power_equivalence(np.array([seeds]), margin, sd, truth)[0]
        assert approximated == pytest.approx(simulated, abs=0.02)
    # The seeds equivalence needs: with sd 2 points and a 1-point margin, about (z_0.95 + z_0.9)^2 x 4 = 34,
    # a little more with t; it grows with the square of sd / margin.
    assert 34 <= statistics.seeds_for_equivalence(0.02, 0.01) <= 38
    assert statistics.seeds_for_equivalence(0.01, 0.01) < statistics.seeds_for_equivalence(0.02, 0.01)
    assert statistics.seeds_for_equivalence(0.5, 0.01) == math.inf


def test_two_level_bootstrap_is_deterministic_and_resamples_seeds_then_images():
    rng = np.random.default_rng(4)
    reference = rng.random((3, 300)) < 0.5
    group = rng.random((3, 300)) < np.array([[0.3], [0.5], [0.7]])  # the seeds disagree by 20 points
    interval = statistics.two_level_bootstrap_ci(reference, group, 500, seed=7)
    assert interval == statistics.two_level_bootstrap_ci(reference, group, 500, seed=7)
    assert interval != statistics.two_level_bootstrap_ci(reference, group, 500, seed=8)

    # The same resamples drawn one at a time, by index rather than by counts.
    draws = np.random.default_rng(7)
    seed_counts = draws.multinomial(3, np.full(3, 1 / 3), size=500)
    image_counts = draws.multinomial(300, np.full(300, 1 / 300), size=500)
    differences = group.astype(float) - reference
    means = [differences[np.repeat(np.arange(3), s)][:, np.repeat(np.arange(300), i)].mean()
             for s, i in zip(seed_counts, image_counts)]
    assert interval == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)
    # Seeds that agree leave only the images' noise: a narrower interval than seeds that disagree.
    agreeing = np.stack([group[1]] * 3)
    narrow = statistics.two_level_bootstrap_ci(np.stack([reference[1]] * 3), agreeing, 500, seed=7)
    assert narrow[1] - narrow[0] < interval[1] - interval[0]


def test_paired_difference_with_predictions():
    rng = np.random.default_rng(5)
    images = tuple(f"test/{i}.png" for i in range(200))
    reference = {str(s): rng.random(200) < 0.5 for s in range(3)}
    group = {str(s): rng.random(200) < 0.6 for s in (2, 1, 0, 7)}  # seed 7 has no partner
    result = statistics.paired_difference(
        {s: Replicate(c.mean(), images, c) for s, c in group.items()},
        {s: Replicate(c.mean(), images[::-1], c[::-1]) for s, c in reference.items()},  # another image order
        200, seed=0, margin=0.01)
    assert result.paired_seeds == ["2", "1", "0"]
    differences = [group[s].mean() - reference[s].mean() for s in result.paired_seeds]
    assert result.differences == pytest.approx(differences)
    assert result.p_value == pytest.approx(stats.ttest_1samp(differences, 0).pvalue)
    for (b, c, p), s in zip(result.mcnemar, result.paired_seeds):
        assert (b, c) == (int(np.sum(reference[s] & ~group[s])), int(np.sum(~reference[s] & group[s])))
        assert p == pytest.approx(stats.binomtest(b, b + c).pvalue)
    assert result.bootstrap_ci[0] <= result.difference <= result.bootstrap_ci[1]

    one = statistics.paired_difference({"0": Replicate(0.6)}, {"0": Replicate(0.5)}, 200, 0, 0.01)
    assert one.p_value is None and one.tost_p is None and "one paired seed" in one.why_no_test
    assert statistics.verdict(len(one.paired_seeds), None, one.tost_p) == "not enough seeds"


def simulated_verdicts(effect: float, comparisons: int, seed: int, margin: float = 0.01,
                       seeds: tuple[int, ...] = (3, 4, 5)) -> list[str]:
    """Verdicts of independent comparisons in a world like the embedded default: accuracy about 52%, a
    training seed moves both conditions by ~4 points together and each by ~1.5 points alone, and each
    accuracy is measured on TEST_IMAGES test images; the group is `effect` better. Each comparison is its
    own report (a family of one for Holm)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(comparisons):
        count = int(rng.choice(seeds))
        shared = 0.52 + rng.normal(0, 0.04, count)
        reference = rng.binomial(TEST_IMAGES, shared + rng.normal(0, 0.015, count)) / TEST_IMAGES
        group = rng.binomial(TEST_IMAGES, shared + effect + rng.normal(0, 0.015, count)) / TEST_IMAGES
        result = statistics.paired_difference({str(s): Replicate(a) for s, a in enumerate(group)},
                                              {str(s): Replicate(a) for s, a in enumerate(reference)}, 100, 0, margin)
        (holm_p,) = statistics.holm([result.p_value])
        out.append(statistics.verdict(count, holm_p, result.tost_p))
    return out


def test_simulated_world_without_an_effect_is_called_different_at_the_nominal_rate():
    verdicts = simulated_verdicts(0.0, 200, seed=10)
    assert 0.01 <= verdicts.count("different") / 200 <= 0.10
    # With 3 to 5 seeds and ~3 points of seed spread, a 1-point equivalence is out of reach.
    assert verdicts.count("equivalent") / 200 <= 0.05


def test_simulated_world_with_a_large_effect_is_called_different():
    verdicts = simulated_verdicts(0.15, 200, seed=11)  # as infeasible backgrounds and colours on the world
    assert verdicts.count("different") / 200 >= 0.95


def test_simulated_equivalence_with_enough_seeds():
    """Without an effect and with the seeds the power plan asks for, TOST shows equivalence about as often as
    planned (0.8); at an effect on the margin, equivalence is (falsely) shown at most at about alpha."""
    spread = 0.015 * math.sqrt(2)  # the sd of a per-seed difference in the simulated world, image noise aside
    needed = int(statistics.seeds_for_equivalence(math.hypot(spread, math.sqrt(2 * 0.25 / TEST_IMAGES)), 0.01))
    verdicts = simulated_verdicts(0.0, 200, seed=12, seeds=(needed,))
    assert 0.7 <= verdicts.count("equivalent") / 200 <= 0.95
    on_margin = simulated_verdicts(0.01, 200, seed=13, seeds=(needed,))
    assert on_margin.count("equivalent") / 200 <= 0.10
