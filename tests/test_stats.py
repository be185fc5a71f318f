"""The evaluator's statistics against published and hand-computed values."""

import math
import time
import warnings

import numpy as np
import pytest

from phfe.eval.stats import (
    bootstrap_interval,
    mcnemar_test,
    memorization_ratio,
    memorization_ratio_interval,
    memorization_ratio_rows,
    paired_bootstrap_difference,
    sigmoid,
    wilson_interval,
)

Z95 = 1.959963984540054


# --- Wilson -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (Wilson score), to 4 decimals
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
        (8, 10, (0.4902, 0.9433)),
    ],
)
def test_wilson_matches_published_values(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_closed_forms_at_the_edges():
    # 0/n: (0, z^2 / (n + z^2)); n/n: (n / (n + z^2), 1)
    assert wilson_interval(0, 10) == pytest.approx((0.0, Z95**2 / (10 + Z95**2)), abs=1e-12)
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + Z95**2), 1.0), abs=1e-12)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_wilson_symmetry_confidence_and_empty():
    low, high = wilson_interval(3, 17)
    assert wilson_interval(14, 17) == pytest.approx((1 - high, 1 - low))
    narrow, wide = wilson_interval(30, 100, 0.80), wilson_interval(30, 100, 0.99)
    assert wide[0] < narrow[0] < 0.3 < narrow[1] < wide[1]
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(5, 10, confidence=1.0)


# --- bootstrap ----------------------------------------------------------------------------------------------


def test_constant_sample_gives_zero_width_interval():
    values = np.full(50, 3.0)
    assert bootstrap_interval(values) == (3.0, 3.0)
    assert bootstrap_interval(values, clusters=np.arange(50) % 7) == (3.0, 3.0)


def test_bootstrap_matches_normal_theory_for_a_mean():
    values = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    half = Z95 * values.std(ddof=1) / math.sqrt(len(values))
    low, high = bootstrap_interval(values, n_resamples=4000)
    assert low == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.1 * half)


def test_bootstrap_covers_a_known_normal_mean():
    # 200 seeded samples of N(1, 1), n = 40: a 95% interval should cover 1.0 in roughly 93-95% of them
    rng = np.random.default_rng(7)
    intervals = [bootstrap_interval(rng.normal(1.0, 1.0, size=40), n_resamples=400, seed=i) for i in range(200)]
    coverage = np.mean([low <= 1.0 <= high for low, high in intervals])
    assert 0.88 <= coverage <= 0.99


def test_cluster_bootstrap_is_wider_with_identical_copies():
    # 20 distinct values, each copied 10 times: there are really only 20 observations
    base = np.random.default_rng(0).normal(size=20)
    values, clusters = np.repeat(base, 10), np.repeat(np.arange(20), 10)
    plain_low, plain_high = bootstrap_interval(values)
    cluster_low, cluster_high = bootstrap_interval(values, clusters=clusters)
    # the cluster interval matches the bootstrap of the 20 distinct values; the plain one is ~sqrt(10) narrower
    distinct_low, distinct_high = bootstrap_interval(base)
    assert cluster_high - cluster_low == pytest.approx(distinct_high - distinct_low, rel=0.15)
    assert cluster_high - cluster_low > 2 * (plain_high - plain_low)


def test_singleton_clusters_are_the_plain_bootstrap_and_labels_can_be_strings():
    values = np.random.default_rng(1).normal(size=60)
    assert bootstrap_interval(values, clusters=np.arange(60)) == bootstrap_interval(values)
    labels = np.array([f"template-{i % 6}" for i in range(60)])
    assert bootstrap_interval(values, clusters=labels) == bootstrap_interval(values, clusters=np.arange(60) % 6)


def test_bootstrap_is_deterministic_by_seed():
    values = np.random.default_rng(2).normal(size=100)
    clusters = np.arange(100) // 4
    for groups in (None, clusters):
        assert bootstrap_interval(values, groups, seed=5) == bootstrap_interval(values, groups, seed=5)
        assert bootstrap_interval(values, groups, seed=5) != bootstrap_interval(values, groups, seed=6)


def test_bootstrap_passes_whole_rows_of_a_2d_array():
    # the statistic sees rows intact: column 1 is always twice column 0
    rows = np.column_stack([np.arange(30.0), 2 * np.arange(30.0)])
    ratios = []

    def ratio(resampled: np.ndarray) -> float:
        ratios.append(resampled[:, 1].sum() / resampled[:, 0].sum())
        return float(resampled[:, 0].mean())

    bootstrap_interval(rows, clusters=np.arange(30) // 3, statistic=ratio, n_resamples=50)
    assert np.allclose(ratios, 2.0)


def test_bootstrap_nan_statistic_and_bad_input():
    assert all(math.isnan(x) for x in bootstrap_interval(np.ones(5), statistic=lambda v: math.nan))
    with pytest.raises(ValueError):
        bootstrap_interval([])
    with pytest.raises(ValueError):
        bootstrap_interval(np.ones(5), clusters=[0, 1])


def test_bootstrap_of_1000_values_is_fast():
    values = np.random.default_rng(0).normal(size=1000)
    clusters = np.arange(1000) // 5
    for groups in (None, clusters):
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            bootstrap_interval(values, groups)
            best = min(best, time.perf_counter() - start)
        assert best < 0.15  # ~20 ms on an idle core; the margin absorbs a busy machine


# --- memorization ratio -------------------------------------------------------------------------------------

CHOSE_MEMORIZED = np.array([1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
CHOSE_IN_CONTEXT = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=bool)  # item 4 chose a distractor


def test_memorization_ratio_on_a_fixture():
    # p_o = 3/8, p_s = 4/8: M_R = 3 / (3 + 4); the distractor item does not count
    assert memorization_ratio(CHOSE_MEMORIZED, CHOSE_IN_CONTEXT) == pytest.approx(3 / 7)
    assert memorization_ratio_rows(np.column_stack([CHOSE_MEMORIZED, CHOSE_IN_CONTEXT])) == pytest.approx(3 / 7)
    assert memorization_ratio([True, False], [False, False]) == 1.0
    assert math.isnan(memorization_ratio([False, False], [False, False]))
    with pytest.raises(ValueError):
        memorization_ratio([True], [True])
    with pytest.raises(ValueError):
        memorization_ratio([True, False], [False])


def test_memorization_ratio_interval():
    memorized, in_context = np.tile(CHOSE_MEMORIZED, 10), np.tile(CHOSE_IN_CONTEXT, 10)
    low, high = memorization_ratio_interval(memorized, in_context)
    assert 0.0 <= low < 3 / 7 < high <= 1.0
    # every copy of the fixture as one cluster: all clusters alike, so M_R never moves
    assert memorization_ratio_interval(memorized, in_context, clusters=np.repeat(np.arange(10), 8)) == pytest.approx(
        (3 / 7, 3 / 7)
    )
    assert all(math.isnan(x) for x in memorization_ratio_interval([False] * 4, [False] * 4))


# --- McNemar ------------------------------------------------------------------------------------------------


def _paired(b: int, c: int, both_right: int = 0, both_wrong: int = 0) -> tuple[np.ndarray, np.ndarray]:
    a = [True] * b + [False] * c + [True] * both_right + [False] * both_wrong
    b_ = [False] * b + [True] * c + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(b_)


@pytest.mark.parametrize(
    ("b", "c", "p_value"),
    [
        (5, 0, 2 * 0.5**5),  # 0.0625
        (0, 5, 2 * 0.5**5),
        (2, 8, 2 * (1 + 10 + 45) / 2**10),  # 0.109375
        (1, 0, 1.0),
        (3, 3, 1.0),
        (0, 0, 1.0),
    ],
)
def test_mcnemar_exact_small_tables(b, c, p_value):
    result = mcnemar_test(*_paired(b, c, both_right=7, both_wrong=3))
    assert result["b"] == b and result["c"] == c and result["n"] == b + c + 10
    assert result["method"] == "exact"
    assert result["p_value"] == pytest.approx(p_value, rel=1e-12)
    assert result["flip_rate"] == pytest.approx((b + c) / (b + c + 10))


def test_mcnemar_chi_square_by_hand():
    # b=10, c=0: X^2 = (|10 - 0| - 1)^2 / 10 = 8.1; P(chi2_1 > 8.1) = 0.004427
    result = mcnemar_test(*_paired(10, 0), exact_limit=0)
    assert result["method"] == "chi2"
    assert result["p_value"] == pytest.approx(0.004427, abs=1e-6)
    assert mcnemar_test(*_paired(40, 40), exact_limit=0)["p_value"] == 1.0


@pytest.mark.parametrize(("b", "c"), [(300, 360), (450, 550), (1000, 1100), (520, 480)])
def test_mcnemar_chi_square_agrees_with_exact_for_large_counts(b, c):
    a, b_ = _paired(b, c, both_right=50)
    exact = mcnemar_test(a, b_, exact_limit=10**6)
    approx = mcnemar_test(a, b_, exact_limit=0)
    assert exact["method"] == "exact" and approx["method"] == "chi2"
    assert approx["p_value"] == pytest.approx(exact["p_value"], rel=0.02)
    assert mcnemar_test(a, b_)["method"] == ("exact" if b + c <= 1000 else "chi2")


def test_mcnemar_empty_and_mismatched():
    empty = mcnemar_test([], [])
    assert empty["p_value"] == 1.0 and math.isnan(empty["flip_rate"])
    with pytest.raises(ValueError):
        mcnemar_test([True], [True, False])


# --- paired difference --------------------------------------------------------------------------------------


def test_paired_bootstrap_difference_by_hand():
    a = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    result = paired_bootstrap_difference(a, b)
    assert result["n"] == 10
    assert result["mean_a"] == pytest.approx(0.5) and result["mean_b"] == pytest.approx(0.4)
    assert result["difference"] == pytest.approx(-0.1)
    # differences are -1, +1, -1 and seven zeros: the interval lies within [-0.5, 0.3] and covers -0.1
    assert -0.5 <= result["low"] <= -0.1 <= result["high"] <= 0.3


def test_paired_bootstrap_difference_uses_the_pairing():
    # b is a plus a constant: unpaired resampling would be wide, paired is exact
    a = np.random.default_rng(4).normal(size=200)
    result = paired_bootstrap_difference(a, a + 0.25, clusters=np.arange(200) // 10)
    assert (result["low"], result["high"]) == pytest.approx((0.25, 0.25))
    assert result["difference"] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        paired_bootstrap_difference([1.0, 2.0], [1.0])


# --- sigmoid ------------------------------------------------------------------------------------------------


def test_sigmoid_is_stable_and_correct():
    x = np.array([-30.0, -2.0, 0.0, 1.5, 30.0])
    assert sigmoid(x) == pytest.approx(1 / (1 + np.exp(-x)), rel=1e-12)
    assert sigmoid(-x) == pytest.approx(1 - sigmoid(x), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sigmoid(1000.0) == 1.0 and sigmoid(-1000.0) == 0.0
        assert sigmoid(-745.0) > 0.0
    assert isinstance(sigmoid(0), float) and sigmoid(0) == 0.5
