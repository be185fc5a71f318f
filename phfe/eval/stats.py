"""Error bars and paired tests for PHFE's rates, with numpy and the standard library only.

Wilson intervals for rates (Wilson 1927), percentile bootstrap intervals clustered by template or entity
(Efron & Tibshirani 1993; cluster bootstrap: Davison & Hinkley 1997, sec. 3.8), the memorization ratio
M_R = p_o / (p_o + p_s) (Longpre et al. 2021), McNemar's test (McNemar 1947) and a paired bootstrap of the
mean difference for comparing two runs (e.g. two quantization levels) on identical items.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

Statistic = Callable[[np.ndarray], Any]


def _alpha(confidence: float) -> float:
    """The two-sided error rate 1 - ``confidence``, after checking that confidence lies in (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return 1.0 - confidence


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (Wilson 1927; Agresti & Coull 1998).

    With n = 0 the data say nothing and the interval is the whole range, (0.0, 1.0).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    z = NormalDist().inv_cdf(1 - _alpha(confidence) / 2)
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2n = z * z / n
    center = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def _resample_indices(
    clusters: ArrayLike | None, n: int, n_resamples: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Row indices of each resample: as many clusters as there are, drawn with replacement, each bringing
    all its rows (rows grouped by cluster). Without clusters every row is its own cluster (plain bootstrap).

    Resamples are drawn in vectorized blocks of about a million indices, to bound memory.
    """
    block = max(1, 2**20 // n)
    if clusters is None:
        for first in range(0, n_resamples, block):
            yield from rng.integers(0, n, size=(min(block, n_resamples - first), n))
        return
    labels = np.asarray(clusters)
    if labels.shape != (n,):
        raise ValueError(f"clusters needs one label per row ({n}), got shape {labels.shape}")
    codes = np.unique(labels, return_inverse=True)[1].ravel()
    order = np.argsort(codes, kind="stable")  # rows grouped by cluster
    sizes = np.bincount(codes)
    starts = np.cumsum(sizes) - sizes
    groups = len(sizes)
    for first in range(0, n_resamples, block):
        draws = rng.integers(0, groups, size=(min(block, n_resamples - first), groups))
        lengths = sizes[draws].ravel()
        ends = np.cumsum(lengths)
        # position k of a drawn cluster's run maps to starts[cluster] + (k - run start)
        rows = order[np.arange(ends[-1]) - np.repeat(ends - lengths - starts[draws.ravel()], lengths)]
        yield from np.split(rows, np.cumsum(lengths.reshape(draws.shape).sum(axis=1))[:-1])


def bootstrap_interval(
    values: ArrayLike,
    clusters: ArrayLike | None = None,
    statistic: Statistic = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(values)`` (Efron & Tibshirani 1993, ch. 13).

    ``values`` is 1-D, or 2-D with one row per item (e.g. paired columns); rows are resampled whole and
    ``statistic`` receives the resampled rows (it must not depend on their order). With ``clusters`` (one
    label per row, e.g. template id or entity) whole clusters are resampled with replacement and the
    statistic is recomputed on their concatenated rows (cluster bootstrap), which keeps correlated rows
    together. Resamples where the statistic is nan (e.g. a ratio with a zero denominator) are dropped;
    the interval is (nan, nan) when the statistic is nan on the data itself or on every resample.
    Deterministic for a given seed.
    """
    data = np.asarray(values)
    if data.ndim not in (1, 2) or len(data) == 0:
        raise ValueError(f"values must be a non-empty 1-D or 2-D array, got shape {data.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    alpha = _alpha(confidence)
    if np.isnan(statistic(data)):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    resamples = _resample_indices(clusters, len(data), n_resamples, rng)
    stats = np.array([statistic(data[rows]) for rows in resamples], dtype=float)
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return math.nan, math.nan
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def memorization_ratio(chose_memorized: ArrayLike, chose_in_context: ArrayLike) -> float:
    """M_R = p_o / (p_o + p_s) (Longpre et al. 2021): of the items where the model chose the memorized
    (original) or the in-context (substituted) answer, the share that chose the memorized one.

    Items where it chose neither (a distractor) do not count; nan when no item chose either.
    """
    memorized = np.asarray(chose_memorized, dtype=bool)
    in_context = np.asarray(chose_in_context, dtype=bool)
    if memorized.shape != in_context.shape or memorized.ndim != 1:
        raise ValueError(f"need two 1-D arrays of equal length, got {memorized.shape} and {in_context.shape}")
    if np.any(memorized & in_context):
        raise ValueError("an item cannot choose both the memorized and the in-context answer")
    p_o, p_s = int(memorized.sum()), int(in_context.sum())
    return p_o / (p_o + p_s) if p_o + p_s else math.nan


def memorization_ratio_rows(rows: np.ndarray) -> float:
    """M_R over a 2-column array: column 0 chose the memorized answer, column 1 the in-context one.

    The row form of :func:`memorization_ratio`, a ``statistic`` for :func:`bootstrap_interval`.
    """
    return memorization_ratio(rows[:, 0], rows[:, 1])


def memorization_ratio_interval(
    chose_memorized: ArrayLike,
    chose_in_context: ArrayLike,
    clusters: ArrayLike | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """(Cluster) percentile bootstrap interval of M_R, resampling items (or clusters) as paired rows."""
    rows = np.column_stack([np.asarray(chose_memorized, dtype=bool), np.asarray(chose_in_context, dtype=bool)])
    return bootstrap_interval(rows, clusters, memorization_ratio_rows, n_resamples, confidence, seed)


def _mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: twice the smaller binomial(b + c, 1/2) tail, capped at 1."""
    m = b + c
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / (1 << m))


def _mcnemar_chi2(b: int, c: int) -> float:
    """McNemar's chi-square (1 df) with Edwards' continuity correction; P(chi2_1 > x) = erfc(sqrt(x / 2))."""
    if b + c == 0:
        return 1.0
    statistic = max(abs(b - c) - 1, 0) ** 2 / (b + c)
    return math.erfc(math.sqrt(statistic / 2))


def mcnemar_test(a_correct: ArrayLike, b_correct: ArrayLike, exact_limit: int = 1000) -> dict[str, Any]:
    """McNemar's test for two runs on identical items (McNemar 1947).

    Returns n; b (a right, b wrong); c (a wrong, b right); flip_rate = (b + c) / n, the share of items whose
    decision changed (nan for n = 0); the two-sided p_value, exact binomial when b + c <= ``exact_limit``,
    else chi-square with continuity correction; and ``method`` ("exact" or "chi2").
    """
    a = np.asarray(a_correct, dtype=bool)
    b_ = np.asarray(b_correct, dtype=bool)
    if a.shape != b_.shape or a.ndim != 1:
        raise ValueError(f"need two 1-D arrays of equal length, got {a.shape} and {b_.shape}")
    n = len(a)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    exact = b + c <= exact_limit
    return {
        "n": n,
        "b": b,
        "c": c,
        "flip_rate": (b + c) / n if n else math.nan,
        "p_value": _mcnemar_exact(b, c) if exact else _mcnemar_chi2(b, c),
        "method": "exact" if exact else "chi2",
    }


def paired_bootstrap_difference(
    a: ArrayLike,
    b: ArrayLike,
    clusters: ArrayLike | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Mean paired difference b - a over identical items, with its (cluster) percentile bootstrap interval.

    ``a`` and ``b`` are per-item values of two runs (e.g. the CFR indicator or soft M_R under two
    quantization levels); items are resampled as pairs, so the interval reflects the paired design.
    Returns n, mean_a, mean_b, difference, low, high.
    """
    a_values = np.asarray(a, dtype=float)
    b_values = np.asarray(b, dtype=float)
    if a_values.shape != b_values.shape or a_values.ndim != 1:
        raise ValueError(f"need two 1-D arrays of equal length, got {a_values.shape} and {b_values.shape}")
    differences = b_values - a_values
    low, high = bootstrap_interval(differences, clusters, np.mean, n_resamples, confidence, seed)
    return {
        "n": len(differences),
        "mean_a": float(a_values.mean()),
        "mean_b": float(b_values.mean()),
        "difference": float(differences.mean()),
        "low": low,
        "high": high,
    }


def sigmoid(x: ArrayLike) -> np.ndarray | float:
    """The logistic function 1 / (1 + exp(-x)), without overflow for large |x|; a float for a scalar."""
    values = np.asarray(x, dtype=float)
    e = np.exp(-np.abs(values))
    result = np.where(values >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return result if result.ndim else float(result)
