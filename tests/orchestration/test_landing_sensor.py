"""What the landing sensor decides on each tick (orchestration/landing.py), the replay command, and
the partition helpers of live mode; the daemon-run sensor itself is covered by tests/e2e/test_live_mode.py."""

import os
from datetime import date, timedelta

import polars as pl

from assets.partitions import day_runs, live_cutoffs
from orchestration.landing import plan_landing, run_request
from orchestration.replay import replay
from orchestration.tags import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from recsys.sources.landing import LandingReader


def _tick(landing, cache, seen, days=(), cutoffs=()):
    return plan_landing(LandingReader(landing, cache), seen, set(days), set(cutoffs))


def test_ticks_new_days_late_file_and_rewrite(tmp_path):
    landing, cache = tmp_path / "landing", tmp_path / "cache"
    written = replay("synthetic:30000", landing, days=4, data_dir=str(tmp_path / "data"), log=lambda _: None)
    assert [p.name for p in written] == [f"{date(2017, 11, 25) + timedelta(days=k)}.csv" for k in range(4)]
    assert {"items.parquet", "users.parquet"} <= {p.name for p in landing.iterdir()}

    first = _tick(landing, cache, {})
    assert first["new_days"] == ["2017-11-25", "2017-11-26", "2017-11-27", "2017-11-28"]
    (run,) = first["runs"]
    request = run_request(run)
    assert request.tags[PARTITION_RANGE_START_TAG] == "2017-11-25" and request.tags[PARTITION_RANGE_END_TAG] == "2017-11-28"

    quiet = _tick(landing, cache, first["files"], first["new_days"])
    assert quiet["changed"] == [] and quiet["runs"] == [] and quiet["new_days"] == []

    late = landing / "2017-11-26-late.csv"
    late.write_text((landing / "2017-11-26.csv").read_text().splitlines()[0] + "\n")
    tick = _tick(landing, cache, first["files"], first["new_days"])
    assert tick["changed"] == ["2017-11-26-late.csv"] and tick["new_days"] == []
    assert [r["keys"] for r in tick["runs"]] == [["2017-11-26"]]
    assert run_request(tick["runs"][0]).partition_key == "2017-11-26"

    late.write_text(late.read_text() * 2)  # the same file rewritten: a new run key for the same day
    os.utime(late, ns=(1, 1))
    again = _tick(landing, cache, tick["files"], first["new_days"])
    assert [r["keys"] for r in again["runs"]] == [["2017-11-26"]] and again["runs"][0]["run_key"] != tick["runs"][0]["run_key"]

    more = replay("synthetic:30000", landing, days=6, data_dir=str(tmp_path / "data"), log=lambda _: None)
    assert len(more) == 2  # days already in the folder are skipped: a replay resumes
    grown = _tick(landing, cache, again["files"], first["new_days"])
    assert grown["new_days"] == ["2017-11-29", "2017-11-30"]


def test_corrupt_replay_and_unroutable_files(tmp_path):
    landing, cache = tmp_path / "landing", tmp_path / "cache"
    replay("synthetic:30000", landing, days=2, corrupt_day=(date(2017, 11, 26), 0.5), data_dir=str(tmp_path / "data"), log=lambda _: None)
    reader = LandingReader(landing, cache)
    batch = reader.read_window(date(2017, 11, 26), date(2017, 11, 26))
    share = batch.quarantine.height / batch.n_read
    assert 0.45 < share < 0.55 and set(batch.quarantine["partition"]) == {"2017-11-26"}
    (landing / "junk.csv").write_text("not,a,log\n")
    tick = _tick(landing, cache, {})
    assert tick["unroutable"] == ["junk.csv"] and tick["new_days"] == ["2017-11-25", "2017-11-26"]


def test_live_cutoffs_are_stable_as_days_arrive():
    days = [date(2017, 11, 25) + timedelta(days=k) for k in range(20)]
    grown = live_cutoffs(days, 3)
    assert all((c - date(1970, 1, 1)).days % 3 == 0 for c in grown)
    assert live_cutoffs(days[:12], 3) == [c for c in grown if c + timedelta(days=2) <= days[11]]  # keys never move
    assert all((c - timedelta(days=6)) >= days[0] for c in grown)  # a train window of at least W days
    assert live_cutoffs(days[:5], 3) == []


def test_day_runs_split_non_consecutive_keys():
    assert day_runs(["2017-11-27", "2017-11-25", "2017-11-26", "2017-12-01"]) == [
        (date(2017, 11, 25), date(2017, 11, 27)),
        (date(2017, 12, 1), date(2017, 12, 1)),
    ]
    assert pl.Series(day_runs(["2017-11-25"])).len() == 1
