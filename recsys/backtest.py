"""Rolling-origin backtests: the temporal protocol at several consecutive cut-offs, and statistics
that pool users across them.

API::

    cutoffs = cutoff_dates(start, end, window_days=28)        # oldest first; the last is the newest
    split = rolling_split(interactions, cutoff, window_days)  # train < T-W <= valid < T <= test < T+W
    pooled = pooled_bootstrap(per_user, n_boot=1000)          # users resampled within each cut-off
    paired = pooled_paired_test(per_user_a, per_user_b)       # same draws for both systems
    tests = paired_against(per_user, "lgbm_ranker", k=10)     # reference vs every other stage, Holm-adjusted

A cut-off T is the first day of a test window of W days. Its valid window is the W days before T and
its train everything before that; events on or after T + W are the future and take no part. This is
how production retraining is judged: fit on what was known at T, serve the next W days. Cut-offs are
laid out backwards from the day after the dataset's last event, W days apart, so the newest test
window ends with the data, and each cut-off keeps at least ``min_train_days`` of train. A cut-off's
result depends only on events before T + W: appending later events adds cut-offs and changes none.

Pooling: ``per_user`` rows are ``(cutoff, user_id, metric, k, value)`` (plus key columns such as
``stage``); a (cutoff, user) pair is one unit, so a user tested at two cut-offs counts twice (their
two test windows are different events). The pooled value is the mean over all units; the bootstrap
resamples units with replacement *within* each cut-off (a stratified bootstrap), so every replicate
keeps each cut-off's share of users, and the interval reflects user-to-user variation, not how many
users each window happened to have.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np
import polars as pl
from scipy import stats as sps

from recsys.metrics.stats import _bootstrap_means, _groups, holm
from recsys.schema import INTERACTION_SCHEMA, conform
from recsys.split import Split, _describe

_SERIES = ("metric", "k")


def cutoff_dates(start: date, end: date, window_days: int, min_train_days: int | None = None) -> list[date]:
    """Test-window starts T_k = end + 1 - W·(k + 1), oldest first, while train keeps ``min_train_days``.

    ``start`` / ``end`` are the first and last event days (inclusive). ``min_train_days`` defaults
    to W. Empty when the data cannot hold train + valid + test windows."""
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    min_train = window_days if min_train_days is None else min_train_days
    after_end = end + timedelta(days=1)
    out = []
    k = 0
    while True:
        cutoff = after_end - timedelta(days=window_days * (k + 1))
        if (cutoff - timedelta(days=window_days) - start).days < min_train:
            break
        out.append(cutoff)
        k += 1
    return sorted(out)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time())


def rolling_bounds(cutoff: date, window_days: int) -> dict[str, datetime]:
    """The rolling split's instants: valid_start = T − W, test_start = T, test_end = T + W."""
    t, w = _midnight(cutoff), timedelta(days=window_days)
    return {"valid_start": t - w, "test_start": t, "test_end": t + w}


def rolling_split(interactions: pl.DataFrame, cutoff: date, window_days: int) -> Split:
    """train ts < T − W; valid T − W <= ts < T; test T <= ts < T + W; later events are dropped."""
    frame = conform(interactions, INTERACTION_SCHEMA)
    b = rolling_bounds(cutoff, window_days)
    ts = pl.col("ts")
    train = frame.filter(ts < b["valid_start"])
    valid = frame.filter((ts >= b["valid_start"]) & (ts < b["test_start"]))
    test = frame.filter((ts >= b["test_start"]) & (ts < b["test_end"]))
    return rolling_split_of(train, valid, test, cutoff, window_days, frame.filter(ts >= b["test_end"]).height)


def rolling_split_of(train: pl.DataFrame, valid: pl.DataFrame, test: pl.DataFrame, cutoff: date, window_days: int, n_future: int) -> Split:
    """The rolling split of folds already assigned (by ``rolling_split`` or by sql/staging/split_rolling.sql
    on either engine), with its params; ``n_future``: the events at or after T + W, left out."""
    if train.is_empty():
        w = timedelta(days=window_days)
        raise ValueError(f"rolling_split: no events before {cutoff - w} (cut-off {cutoff}, window {window_days} days): train is empty")
    b = rolling_bounds(cutoff, window_days)
    params = _describe(
        "temporal",
        train,
        valid,
        test,
        cutoff=cutoff.isoformat(),
        window_days=window_days,
        t_valid_start=str(b["valid_start"]),
        t_test_start=str(b["test_start"]),
        t_test_end=str(b["test_end"]),
        n_future_rows_excluded=n_future,
    )
    return Split(train, valid, test, params)


def _keys(per_user: pl.DataFrame) -> list[str]:
    required = {"cutoff", "user_id", "metric", "k", "value"}
    missing = required - set(per_user.columns)
    if missing:
        raise ValueError(f"per-user frame lacks columns {sorted(missing)}; expected cutoff, user_id, metric, k, value")
    return [c for c in per_user.columns if c not in required]


def _strata(rows: pl.DataFrame) -> tuple[list[np.ndarray], pl.DataFrame]:
    """Per cut-off (n_units × n_series) value matrices, same series columns in every stratum."""
    series = rows.select(_SERIES).unique(maintain_order=True).sort(_SERIES).with_row_index("_col")
    out = []
    for _, part in rows.sort("cutoff").group_by("cutoff", maintain_order=True):
        units = part.select("user_id").unique().sort("user_id").with_row_index("_row")
        cells = part.join(series, on=list(_SERIES)).join(units, on="user_id")
        if cells.height != series.height * units.height:
            raise ValueError("per-user frame is not complete: every (cutoff, user) needs a value for every (metric, k)")
        values = np.full((units.height, series.height), np.nan)
        values[cells["_row"].to_numpy(), cells["_col"].to_numpy()] = cells["value"].to_numpy()
        out.append(values)
    return out, series.drop("_col")


def _stratified_sums(strata: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot × n_series) sums over units resampled with replacement inside each stratum."""
    total = np.zeros((n_boot, strata[0].shape[1]))
    for values in strata:  # each stratum's resampled mean (recsys.metrics.stats), back to a sum
        total += _bootstrap_means(values, n_boot, rng) * values.shape[0]
    return total


def pooled_bootstrap(per_user: pl.DataFrame, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pl.DataFrame:
    """Pooled mean over (cutoff, user) units with a stratified-bootstrap percentile interval.

    -> [*keys], metric, k, value, ci_low, ci_high, n_users (units), n_cutoffs"""
    keys = _keys(per_user)
    rng = np.random.default_rng(seed)
    parts = []
    for key, rows in _groups(per_user, keys):
        strata, series = _strata(rows)
        n = sum(s.shape[0] for s in strata)
        means = _stratified_sums(strata, n_boot, rng) / n
        low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
        parts.append(
            series.with_columns(
                *[pl.lit(v).alias(c) for c, v in key.items()],
                pl.Series("value", np.vstack(strata).mean(axis=0)),
                pl.Series("ci_low", low),
                pl.Series("ci_high", high),
                pl.lit(n, dtype=pl.Int64).alias("n_users"),
                pl.lit(len(strata), dtype=pl.Int64).alias("n_cutoffs"),
            )
        )
    return pl.concat(parts).select(*keys, "metric", "k", "value", "ci_low", "ci_high", "n_users", "n_cutoffs")


def pooled_paired_test(
    per_user_a: pl.DataFrame, per_user_b: pl.DataFrame, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> pl.DataFrame:
    """a − b on the same (cutoff, user) units: stratified paired bootstrap CI and a paired t p-value.

    -> [*keys], metric, k, mean_diff, ci_low, ci_high, p_value, n_users, n_cutoffs"""
    keys = _keys(per_user_a)
    on = [*keys, "cutoff", "user_id", *_SERIES]
    joined = per_user_a.join(per_user_b, on=on, how="full", coalesce=True, suffix="_b")
    unmatched = joined.filter(pl.col("value").is_null() | pl.col("value_b").is_null())
    if unmatched.height:
        raise ValueError(
            f"{unmatched.height} (cutoff, user, metric, k) rows appear on one side only, e.g. {unmatched.head(1).to_dicts()[0]}"
        )
    diffs = joined.select(*on, (pl.col("value") - pl.col("value_b")).alias("value"))
    rng = np.random.default_rng(seed)
    parts = []
    for key, rows in _groups(diffs, keys):
        strata, series = _strata(rows)
        pooled = np.vstack(strata)
        n = pooled.shape[0]
        means = _stratified_sums(strata, n_boot, rng) / n
        low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
        p = []
        for col in range(pooled.shape[1]):
            d = pooled[:, col]
            p.append(1.0 if np.allclose(d, 0.0) else float(sps.ttest_1samp(d, 0.0).pvalue))
        parts.append(
            series.with_columns(
                *[pl.lit(v).alias(c) for c, v in key.items()],
                pl.Series("mean_diff", pooled.mean(axis=0)),
                pl.Series("ci_low", low),
                pl.Series("ci_high", high),
                pl.Series("p_value", p),
                pl.lit(n, dtype=pl.Int64).alias("n_users"),
                pl.lit(len(strata), dtype=pl.Int64).alias("n_cutoffs"),
            )
        )
    return pl.concat(parts).select(*keys, "metric", "k", "mean_diff", "ci_low", "ci_high", "p_value", "n_users", "n_cutoffs")


def paired_against(
    per_user: pl.DataFrame, reference: str, k: int = 10, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pl.DataFrame:
    """``reference`` − every other stage on NDCG@k over the same (cutoff, user) units, Holm across the comparisons.

    ``per_user``: stage, cutoff, user_id, metric, k, value (other columns are dropped). -> stage, versus,
    mean_diff, ci_low, ci_high, p_value, p_holm, decided_95 (p_holm < alpha), n_users, n_cutoffs, verdict."""
    ndcg = per_user.filter((pl.col("metric") == "ndcg") & (pl.col("k") == k)).select("stage", "cutoff", "user_id", "metric", "k", "value")
    ref = ndcg.filter(pl.col("stage") == reference).drop("stage")
    parts = []
    for stage in sorted(set(ndcg["stage"]) - {reference}):
        other = ndcg.filter(pl.col("stage") == stage).drop("stage")
        test = pooled_paired_test(ref, other, n_boot=n_boot, alpha=alpha, seed=seed)
        parts.append(test.with_columns(pl.lit(reference).alias("stage"), pl.lit(stage).alias("versus")))
    if not parts:
        return pl.DataFrame()
    out = pl.concat(parts)
    out = out.with_columns(pl.Series("p_holm", holm(out["p_value"].to_numpy())))
    decided = pl.col("p_holm") < alpha
    sign = pl.when(pl.col("mean_diff") >= 0).then(pl.lit("beats")).otherwise(pl.lit("trails"))
    return out.with_columns(
        decided.alias("decided_95"),
        pl.format(
            "{} {} {} by {} NDCG@" + str(k) + " [{}, {}]: {}",
            "stage",
            sign,
            "versus",
            pl.col("mean_diff").round(4),
            pl.col("ci_low").round(4),
            pl.col("ci_high").round(4),
            pl.when(decided).then(pl.lit("decided at 95% after Holm")).otherwise(pl.lit("not decided at 95% after Holm")),
        ).alias("verdict"),
    ).select("stage", "versus", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm", "decided_95", "n_users", "n_cutoffs", "verdict")
