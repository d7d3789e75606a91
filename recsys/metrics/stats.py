"""Uncertainty over users: bootstrap confidence intervals and paired comparisons.

API::

    bootstrap_ci(per_user, n_boot=1000, alpha=0.05, seed=0)
      -> [*keys], metric, k, value, ci_low, ci_high, n_users
    paired_test(per_user_a, per_user_b, n_boot=1000, alpha=0.05, seed=0, test="t")
      -> [*keys], metric, k, mean_diff, ci_low, ci_high, p_value, n_users

``per_user`` frames are ``evaluate(..., per_user=True)`` output: user_id, metric, k, value, plus any
extra key columns (e.g. ``cohort``); each distinct key combination is handled separately.

bootstrap_ci resamples users with replacement, the SAME draws for every (metric, k) of a key, so
intervals of different metrics are coherent. Draws are multinomial weight matrices (chunk × n_users)
multiplied with the (n_users × n_series) value matrix: no Python loop per draw. The interval is the
percentile interval [alpha/2, 1 − alpha/2] of the resampled means; value is the plain mean.

paired_test pairs users present in both frames (a user missing from one side is an error: the two
systems must be judged on the same truth). mean_diff = mean(a − b); the CI is a paired bootstrap
percentile interval of that mean (users resampled jointly); the p-value is two-sided, from the
paired t-test (``test="t"``: one-sample t on the differences, which is
scipy.stats.ttest_rel) or the Wilcoxon signed-rank test
(``test="wilcoxon"``, zero differences dropped, "wilcox" zero method). All-zero differences give
p = 1. No multiple-comparison correction is applied.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats as sps

_SERIES = ("metric", "k")
_CHUNK_CELLS = 4_000_000  # weights per chunk: bounds memory at ~32 MB whatever n_users is


def _keys(per_user: pl.DataFrame) -> list[str]:
    required = {"user_id", "metric", "k", "value"}
    missing = required - set(per_user.columns)
    if missing:
        raise ValueError(f"per-user frame lacks columns {sorted(missing)}; expected user_id, metric, k, value")
    return [c for c in per_user.columns if c not in required]


def _matrix(rows: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame]:
    """(n_users × n_series) values and the (metric, k) of each column, in order of appearance."""
    series = rows.select(_SERIES).unique(maintain_order=True).with_row_index("_col")
    users = rows.select("user_id").unique().sort("user_id").with_row_index("_row")
    cells = rows.join(series, on=list(_SERIES)).join(users, on="user_id")
    if cells.height != series.height * users.height:
        raise ValueError("per-user frame is not complete: every user needs a value for every (metric, k)")
    values = np.full((users.height, series.height), np.nan)
    values[cells["_row"].to_numpy(), cells["_col"].to_numpy()] = cells["value"].to_numpy()
    return values, series.drop("_col")


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot × n_series) means of users resampled with replacement."""
    n = values.shape[0]
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    out = np.empty((n_boot, values.shape[1]))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.integers(0, n, size=(size, n))
        # row-wise bincount through offsets: weights[b, u] = times user u was drawn in replicate b
        weights = np.bincount((draws + n * np.arange(size)[:, None]).ravel(), minlength=size * n).reshape(size, n)
        out[start : start + size] = weights @ values / n
    return out


def _groups(frame: pl.DataFrame, keys: list[str]):
    if not keys:
        yield {}, frame
        return
    for key_values, rows in frame.group_by(keys, maintain_order=True):
        yield dict(zip(keys, key_values)), rows


def bootstrap_ci(per_user: pl.DataFrame, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pl.DataFrame:
    """Percentile bootstrap CI of each mean metric, resampling users."""
    keys = _keys(per_user)
    rng = np.random.default_rng(seed)
    parts = []
    for key, rows in _groups(per_user, keys):
        values, series = _matrix(rows)
        means = _bootstrap_means(values, n_boot, rng)
        low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
        parts.append(
            series.with_columns(
                *[pl.lit(v).alias(c) for c, v in key.items()],
                pl.Series("value", values.mean(axis=0)),
                pl.Series("ci_low", low),
                pl.Series("ci_high", high),
                pl.lit(values.shape[0], dtype=pl.Int64).alias("n_users"),
            )
        )
    return pl.concat(parts).select(*keys, "metric", "k", "value", "ci_low", "ci_high", "n_users")


def paired_test(
    per_user_a: pl.DataFrame,
    per_user_b: pl.DataFrame,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    test: str = "t",
) -> pl.DataFrame:
    """Paired comparison a − b on the same users: bootstrap CI of the mean difference and a p-value."""
    if test not in ("t", "wilcoxon"):
        raise ValueError(f"test must be 't' or 'wilcoxon', got {test!r}")
    keys = _keys(per_user_a)
    if set(_keys(per_user_b)) != set(keys):
        raise ValueError(f"key columns differ: {keys} vs {_keys(per_user_b)}")
    on = [*keys, "user_id", *_SERIES]
    joined = per_user_a.join(per_user_b, on=on, how="full", coalesce=True, suffix="_b")
    unmatched = joined.filter(pl.col("value").is_null() | pl.col("value_b").is_null())
    if unmatched.height:
        raise ValueError(f"{unmatched.height} (user, metric, k) rows appear on one side only, e.g. {unmatched.head(1).to_dicts()[0]}")
    diffs = joined.select(*on, (pl.col("value") - pl.col("value_b")).alias("value"))
    rng = np.random.default_rng(seed)
    parts = []
    for key, rows in _groups(diffs, keys):
        values, series = _matrix(rows)
        means = _bootstrap_means(values, n_boot, rng)
        low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
        parts.append(
            series.with_columns(
                *[pl.lit(v).alias(c) for c, v in key.items()],
                pl.Series("mean_diff", values.mean(axis=0)),
                pl.Series("ci_low", low),
                pl.Series("ci_high", high),
                pl.Series("p_value", _p_values(values, test)),
                pl.lit(values.shape[0], dtype=pl.Int64).alias("n_users"),
            )
        )
    return pl.concat(parts).select(*keys, "metric", "k", "mean_diff", "ci_low", "ci_high", "p_value", "n_users")


def _p_values(diffs: np.ndarray, test: str) -> np.ndarray:
    p = np.ones(diffs.shape[1])
    informative = np.any(diffs != 0, axis=0) & (diffs.shape[0] > 1)
    if not informative.any():
        return p
    cols = diffs[:, informative]
    if test == "t":
        with np.errstate(divide="ignore", invalid="ignore"):
            result = sps.ttest_1samp(cols, 0.0, axis=0)
        pv = np.asarray(result.pvalue, dtype=np.float64)
        # constant non-zero differences have zero variance: the difference is certain
        pv = np.where(np.isnan(pv), 0.0, pv)
    else:
        pv = np.asarray(sps.wilcoxon(cols, zero_method="wilcox", axis=0).pvalue, dtype=np.float64)
    p[informative] = pv
    return p


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error control over the comparisons given).

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m − j + 1) · p_(j)); returned in input order.
    A comparison is decided at level alpha when its adjusted p-value is below alpha."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
