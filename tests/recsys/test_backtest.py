"""Rolling-origin cut-offs, the rolling split, and statistics pooled across cut-offs."""

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from recsys.backtest import cutoff_dates, pooled_bootstrap, pooled_paired_test, rolling_split
from recsys.schema import INTERACTION_SCHEMA, conform


def test_cutoffs_on_ml100k_bounds_end_with_the_data():
    cuts = cutoff_dates(date(1997, 9, 20), date(1998, 4, 22), window_days=28)
    assert cuts[-1] == date(1998, 3, 26)  # test window 03-26 .. 04-22, the last event day
    assert all((b - a).days == 28 for a, b in zip(cuts, cuts[1:]))
    assert (cuts[0] - timedelta(days=28) - date(1997, 9, 20)).days >= 28  # train keeps a full window
    assert len(cuts) == 5


def test_cutoffs_need_room_for_three_windows():
    assert cutoff_dates(date(2020, 1, 1), date(2020, 1, 20), window_days=7) == []
    assert cutoff_dates(date(2020, 1, 1), date(2020, 1, 21), window_days=7) == [date(2020, 1, 15)]
    with pytest.raises(ValueError, match="window_days"):
        cutoff_dates(date(2020, 1, 1), date(2020, 2, 1), window_days=0)


def _log(days: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * 20
    ts = [datetime(2020, 1, 1) + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, days * 86400, n))]
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(1, 30, n),
            "item_id": rng.integers(1, 50, n),
            "event_type": ["view"] * n,
            "value": np.ones(n),
            "ts": ts,
            "session_id": [None] * n,
            "source": ["t"] * n,
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us")), pl.col("ts").dt.date().alias("event_date"))
    return conform(frame, INTERACTION_SCHEMA)


def test_rolling_split_windows_and_future_excluded():
    log = _log(40)
    split = rolling_split(log, date(2020, 1, 29), window_days=7)
    t, w = datetime(2020, 1, 29), timedelta(days=7)
    assert split.train["ts"].max() < t - w
    assert split.valid["ts"].min() >= t - w and split.valid["ts"].max() < t
    assert split.test["ts"].min() >= t and split.test["ts"].max() < t + w
    future = log.filter(pl.col("ts") >= t + w).height
    assert future > 0 and split.params["n_future_rows_excluded"] == future
    assert split.train.height + split.valid.height + split.test.height + future == log.height
    assert split.params["cutoff"] == "2020-01-29" and split.params["protocol"] == "temporal"


def test_appending_later_events_changes_no_earlier_cutoff():
    log = _log(40)
    more = _log(60, seed=1).filter(pl.col("ts") >= datetime(2020, 2, 10))  # events after every earlier window
    grown = pl.concat([log, more])
    for cutoff in cutoff_dates(date(2020, 1, 1), date(2020, 2, 9), window_days=7):
        a, b = rolling_split(log, cutoff, 7), rolling_split(grown, cutoff, 7)
        for part in ("train", "valid", "test"):
            assert getattr(a, part).equals(getattr(b, part)), (cutoff, part)


def _per_user(values_by_cutoff: dict[str, np.ndarray], stage: str | None = None) -> pl.DataFrame:
    frames = []
    for cutoff, values in values_by_cutoff.items():
        frames.append(pl.DataFrame({"cutoff": cutoff, "user_id": np.arange(len(values)), "metric": "ndcg", "k": 10, "value": values}))
    out = pl.concat(frames).with_columns(pl.col("k").cast(pl.Int32))
    return out if stage is None else out.with_columns(pl.lit(stage).alias("stage"))


def test_pooled_bootstrap_pools_units_and_stratifies():
    rng = np.random.default_rng(0)
    a, b = rng.random(200) * 0.2, 0.6 + rng.random(50) * 0.2  # two cut-offs with very different levels
    pooled = pooled_bootstrap(_per_user({"c1": a, "c2": b}), n_boot=2000, seed=1).row(0, named=True)
    assert pooled["value"] == pytest.approx(np.r_[a, b].mean())
    assert pooled["n_users"] == 250 and pooled["n_cutoffs"] == 2
    assert pooled["ci_low"] < pooled["value"] < pooled["ci_high"]
    # stratified: the share of each cut-off is fixed, so the interval is far narrower than an
    # unstratified bootstrap of the mixture (whose spread is dominated by the level difference)
    units = np.r_[a, b]
    plain = np.quantile([rng.choice(units, units.size).mean() for _ in range(2000)], [0.025, 0.975])
    assert pooled["ci_high"] - pooled["ci_low"] < 0.5 * (plain[1] - plain[0])


def test_pooled_paired_test_matches_ttest_on_pooled_differences():
    rng = np.random.default_rng(2)
    base = {"c1": rng.random(80), "c2": rng.random(60)}
    better = {c: v + 0.05 + rng.normal(0, 0.05, v.size) for c, v in base.items()}
    out = pooled_paired_test(_per_user(better), _per_user(base), n_boot=1000).row(0, named=True)
    diffs = np.r_[better["c1"] - base["c1"], better["c2"] - base["c2"]]
    assert out["mean_diff"] == pytest.approx(diffs.mean())
    assert out["p_value"] == pytest.approx(sps.ttest_1samp(diffs, 0.0).pvalue)
    assert out["ci_low"] > 0 and out["n_users"] == 140 and out["n_cutoffs"] == 2
    with pytest.raises(ValueError, match="one side only"):
        pooled_paired_test(_per_user(better), _per_user({"c1": base["c1"]}))
