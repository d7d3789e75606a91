"""Implausible timestamps never create partitions: they are quarantined as timestamp_out_of_range."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.sources import open_reader
from recsys.sources.lines import TS_OUT_OF_RANGE, PlausibleWindow, plausible_window, read_whole
from recsys.sources.taobao import TaobaoReader

DAY0 = date(2017, 11, 25)
DAYS = [DAY0 + timedelta(days=k) for k in range(9)]  # 2017-11-25 .. 2017-12-03
PREFIX = TS_OUT_OF_RANGE + ": "


def _unix(day: date) -> int:
    return int((datetime(day.year, day.month, day.day) - datetime(1970, 1, 1)).total_seconds())


def _outliers() -> dict[str, str]:
    """raw line -> the start of the reason it must get (a few dozen implausible stamps)."""
    out: dict[str, str] = {}
    window = "outside the plausible window [2017-11-25, 2017-12-03]"
    for k in range(20):  # the Unix epoch: 1970-01-01
        out[f"{900 + k},7,3,pv,{k * 37}"] = f"{PREFIX}event_date 1970-01-01 {window}"
    for k in range(12):  # 2038, inside the 2100 limit of unix seconds
        out[f"{950 + k},8,3,pv,{2145916800 + k * 60}"] = f"{PREFIX}event_date 2038-01-01 {window}"
    out["960,8,3,cart,2147483647"] = f"{PREFIX}event_date 2038-01-19 {window}"
    out["961,9,3,pv,4102444800"] = f"{PREFIX}4102444800 is past 2100-01-01 in unix seconds"
    out["962,9,3,pv,4102444801"] = f"{PREFIX}4102444801 is past 2100-01-01 in unix seconds"
    out["963,9,3,pv,-5"] = f"{PREFIX}-5 is negative"
    out["964,9,3,pv,-86400"] = f"{PREFIX}-86400 is negative"
    out["965,9,3,buy,1511544070000"] = f"{PREFIX}1511544070000 is past 2100-01-01 in unix seconds (milliseconds?)"
    out["966,9,3,pv,1511544070000000"] = f"{PREFIX}1511544070000000 is past 2100-01-01 in unix seconds (microseconds?)"
    out["967,9,3,pv,abc"] = "timestamp 'abc' is not a unix time"
    out["968,9,3,pv,"] = "timestamp '' is not a unix time"
    return out


def _write_log(path: Path, n: int = 10_000, seed: int = 0) -> tuple[int, dict[str, str]]:
    """n valid Taobao lines over DAYS (every day busy) with the outliers spread through the file."""
    rng = np.random.default_rng(seed)
    start = _unix(DAY0)
    frame = pl.DataFrame(
        {
            "u": rng.integers(1, 800, n),
            "i": rng.integers(1, 3000, n),
            "c": rng.integers(1, 40, n),
            "b": np.array(["pv", "pv", "pv", "pv", "cart", "fav", "buy"])[rng.integers(0, 7, n)],
            "t": rng.integers(start, start + len(DAYS) * 86_400, n),
        }
    )
    lines = frame.select(pl.concat_str(pl.all().cast(pl.Utf8), separator=","))[:, 0].to_list()
    bad = _outliers()
    for j, line in enumerate(bad):
        lines.insert((j * 977) % len(lines), line)
    path.write_text("\n".join(lines) + "\n")
    return n, bad


def test_outliers_are_quarantined_and_never_stretch_the_partitions(tmp_path):
    path = tmp_path / "UserBehavior.csv"
    n, bad = _write_log(path)
    reader = open_reader(f"taobao:{path}", tmp_path / "cache")
    lo, hi = reader.date_bounds()
    assert (lo, hi) == (DAYS[0], DAYS[-1])  # not 1970 .. 2038
    assert (hi - lo).days + 1 == len(DAYS)  # one partition per real day

    got = read_whole(reader)
    n_lines = path.read_text().count("\n")
    assert n_lines == n + len(bad)
    assert got.n_read == n_lines == got.interactions.height + got.quarantine.height
    assert got.interactions.height == n and got.quarantine.height == len(bad)
    assert sorted(got.interactions["event_date"].unique()) == DAYS

    reasons = dict(zip(got.quarantine["raw_line"], got.quarantine["reason"]))
    assert set(reasons) == set(bad)
    for line, want in bad.items():
        assert reasons[line].startswith(want), (line, reasons[line])
    window_reason = reasons["900,7,3,pv,0"]
    assert window_reason.endswith("(1%/99% day quantiles padded by max(2 d, 25% of their span))")
    # the ingestion asset groups reasons by the text before the first ":"
    groups = got.quarantine.group_by(pl.col("reason").str.split(":").list.first().alias("kind")).len()
    counts = dict(zip(groups["kind"], groups["len"]))
    assert counts == {TS_OUT_OF_RANGE: len(bad) - 2, "timestamp 'abc' is not a unix time": 1, "timestamp '' is not a unix time": 1}
    # no day of its own: every outlier is unroutable, returned once, by the first day's window
    assert set(got.quarantine["partition"]) == {"unroutable"}
    assert reader.read_window(DAYS[1], DAYS[-1]).quarantine.height == 0


def test_partition_bounds_and_env_override(tmp_path, monkeypatch):
    from resources import settings
    from resources.datasets import dataset_bounds

    path = tmp_path / "UserBehavior.csv"
    _write_log(path)
    monkeypatch.delenv("RECDAG_TS_WINDOW", raising=False)
    monkeypatch.delenv("RECDAG_TS_QUANTILE", raising=False)
    spec = f"taobao:{path}"
    assert dataset_bounds(spec, str(tmp_path / "data")) == (DAYS[0], DAYS[-1])

    monkeypatch.setenv("RECDAG_TS_WINDOW", "2017-11-27..2017-12-01")
    assert settings.ts_window() == PlausibleWindow(lo=date(2017, 11, 27), hi=date(2017, 12, 1))
    # the cached bounds were chosen by another rule: recomputed
    assert dataset_bounds(spec, str(tmp_path / "data")) == (date(2017, 11, 27), date(2017, 12, 1))

    monkeypatch.setenv("RECDAG_TS_WINDOW", "2017-11-27..")
    assert settings.ts_window() == PlausibleWindow(lo=date(2017, 11, 27))
    for bad in ("2017-11-27", "..", "2017-13-01..2017-12-01", "2017-12-02..2017-12-01"):
        monkeypatch.setenv("RECDAG_TS_WINDOW", bad)
        with pytest.raises(ValueError, match="RECDAG_TS_WINDOW"):
            settings.ts_window()
    monkeypatch.delenv("RECDAG_TS_WINDOW")
    monkeypatch.setenv("RECDAG_TS_QUANTILE", "0.05")
    assert settings.ts_window() == PlausibleWindow(quantile=0.05)


def test_explicit_window_override(tmp_path):
    path = tmp_path / "UserBehavior.csv"
    n, bad = _write_log(path)
    rule = PlausibleWindow(lo=date(2017, 11, 27), hi=date(2017, 12, 1))
    reader = TaobaoReader(path, tmp_path / "cache", window=rule)
    assert reader.date_bounds() == (date(2017, 11, 27), date(2017, 12, 1))
    got = read_whole(reader)
    assert got.n_read == n + len(bad) == got.interactions.height + got.quarantine.height
    assert sorted(got.interactions["event_date"].unique()) == DAYS[2:7]
    day0 = got.quarantine.filter(pl.col("reason").str.contains("event_date 2017-11-25"))["reason"]
    assert day0.len() > 900  # ~1/9 of the valid rows
    assert day0[0] == f"{PREFIX}event_date 2017-11-25 outside the plausible window [2017-11-27, 2017-12-01] (explicit window)"

    # an explicit window wider than the data: partitions still end at the data's days
    wide = TaobaoReader(path, tmp_path / "cache", window=PlausibleWindow(lo=date(2017, 1, 1), hi=date(2017, 12, 31)))
    assert wide.date_bounds() == (DAYS[0], DAYS[-1])
    # a caller's declared bounds win over any rule
    fixed = TaobaoReader(path, tmp_path / "cache", bounds=(DAYS[0], DAYS[3]))
    reason = read_whole(fixed).quarantine.filter(pl.col("raw_line") == "900,7,3,pv,0")["reason"][0]
    assert reason == f"{PREFIX}event_date 1970-01-01 outside the declared bounds [2017-11-25, 2017-11-28]"


def _counts(days_rows: dict[date, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"event_date": list(days_rows), "n_rows": list(days_rows.values()), "n_valid": list(days_rows.values())},
        schema={"event_date": pl.Date, "n_rows": pl.Int64, "n_valid": pl.Int64},
    )


def test_plausible_window_rule():
    busy = {d: 1_000 for d in DAYS}
    # a day of 2 stray rows passed the old 1e-3 tail fraction; weighted quantiles ignore it
    stray = {date(1970, 1, 1): 2, **busy, date(2038, 1, 19): 2}
    assert plausible_window(_counts(stray), PlausibleWindow()) == (DAYS[0], DAYS[-1])
    # quiet days next to the data are plausible (within the padding) and kept
    near = {DAYS[0] - timedelta(days=2): 3, **busy, DAYS[-1] + timedelta(days=1): 1}
    assert plausible_window(_counts(near)) == (DAYS[0] - timedelta(days=2), DAYS[-1] + timedelta(days=1))
    # a sparse but real tail over a long span is kept: padding grows with the span
    span = {date(2000, 1, 1) + timedelta(days=7 * k): 1 + k for k in range(500)}
    days = sorted(span)
    assert plausible_window(_counts(span)) == (days[0], days[-1])
    # quantile 0 is the plain first/last valid day; no valid rows: None
    assert plausible_window(_counts(stray), PlausibleWindow(quantile=0.0, pad_fraction=0.0)) == (date(1970, 1, 1), date(2038, 1, 19))
    assert plausible_window(_counts({})) is None
    assert plausible_window(_counts(busy), PlausibleWindow(lo=date(2018, 1, 1), hi=date(2018, 2, 1))) is None
    with pytest.raises(ValueError):
        PlausibleWindow(quantile=0.5)
    with pytest.raises(ValueError):
        PlausibleWindow(lo=date(2018, 1, 2), hi=date(2018, 1, 1))


def test_movielens_normal_spread_drops_nothing(tmp_path):
    """Ratings over 7 months with quiet first and last weeks (as ML-100K): every row loads."""
    d = tmp_path / "ml-100k"
    d.mkdir()
    rng = np.random.default_rng(3)
    start, n_days = date(1997, 9, 20), 215
    lines, k = [], 0
    for day in range(n_days):
        quiet = day < 7 or day >= n_days - 7
        for _ in range(int(rng.integers(1, 3)) if quiet else int(rng.integers(5, 40))):
            t = _unix(start + timedelta(days=day)) + int(rng.integers(0, 86_400))
            lines.append(f"{1 + k % 943}\t{1 + k % 1682}\t{1 + k % 5}\t{t}")
            k += 1
    (d / "u.data").write_text("\n".join(lines) + "\n")
    (d / "u.item").write_text("")
    (d / "u.user").write_text("")
    reader = open_reader(f"movielens:{d}", tmp_path / "cache")
    assert reader.date_bounds() == (start, start + timedelta(days=n_days - 1))
    got = read_whole(reader)
    assert got.quarantine.height == 0 and got.interactions.height == len(lines) == got.n_read
