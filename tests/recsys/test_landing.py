"""The landing-folder reader: formats, day routing, stray lines, late files, accounting."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from recsys.sources import SourceError, open_reader
from recsys.sources.landing import LandingReader, list_landing_files
from recsys.sources.lines import read_whole

DAY0 = date(2017, 11, 25)


def _unix(day: date, second: int) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + second


def _taobao_day(path: Path, day: date, n: int, extra: list[str] = ()) -> list[str]:
    lines = [f"{1 + k % 7},{100 + k % 13},{k % 3},{['pv', 'cart', 'fav', 'buy'][k % 4]},{_unix(day, 60 * k)}" for k in range(n)]
    lines += list(extra)
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.fixture
def folder(tmp_path):
    land = tmp_path / "landing"
    land.mkdir()
    for k in range(3):
        _taobao_day(land / f"{DAY0 + timedelta(days=k)}.csv", DAY0 + timedelta(days=k), 40)
    return land


def test_days_formats_and_accounting(folder, tmp_path):
    day3 = DAY0 + timedelta(days=3)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + [
        f"{k + 1}\t{200 + k}\t4\t{_unix(day3, k)}" for k in range(10)
    ]
    (folder / "ratings.inter").write_text("\n".join(inter) + "\n")
    pl.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": [300, 301],
            "timestamp": [datetime(2017, 11, 29, 1), datetime(2017, 11, 29, 2)],
            "event_type": ["buy", "bogus"],
        }
    ).write_parquet(folder / "extra.parquet")
    (folder / ".half-written.csv").write_text("1,2,3,pv,0\n")  # hidden: still being written
    reader = LandingReader(folder, tmp_path / "cache")
    assert [f.name for f in reader.files] == ["2017-11-25.csv", "2017-11-26.csv", "2017-11-27.csv", "extra.parquet", "ratings.inter"]
    assert reader.days() == [DAY0 + timedelta(days=k) for k in range(5)]
    whole = read_whole(reader)
    assert whole.n_read == 3 * 40 + 10 + 2
    assert whole.interactions.height + whole.quarantine.height == whole.n_read
    (bad,) = whole.quarantine.iter_rows(named=True)
    assert bad["source"].endswith("extra.parquet") and "bogus" in bad["reason"] and bad["partition"] == "2017-11-29"
    rated = whole.interactions.filter(pl.col("event_type") == "rate")
    assert rated.height == 10 and rated["value"].unique().to_list() == [4.0]
    assert whole.interactions["seq"].n_unique() == whole.interactions.height


def test_stray_lines_go_to_the_files_home_day(folder, tmp_path):
    stray = ["7,7,7,pv,0", "7,7,7,pv,4102444800", "7,7,7,pv,-5", "7,7,7,pv,abc", "7,7,7,pv,1511568000000"]
    day = DAY0 + timedelta(days=1)
    _taobao_day(folder / f"{day}.csv", day, 40, extra=stray)
    reader = LandingReader(folder, tmp_path / "cache")
    assert reader.days() == [DAY0 + timedelta(days=k) for k in range(3)]  # no 1970 or 2100 partitions
    batch = reader.read_window(day, day)
    assert batch.interactions.height == 40 and batch.quarantine.height == len(stray)
    assert set(batch.quarantine["partition"]) == {day.isoformat()}
    out_of_range = batch.quarantine.filter(pl.col("reason").str.starts_with("timestamp_out_of_range"))
    assert out_of_range.height == 4  # the epoch, 2100, negative and millisecond stamps; "abc" is unparsable
    assert read_whole(reader).n_read == 3 * 40 + len(stray)


def test_a_file_without_a_plausible_row_is_reported_not_loaded(folder, tmp_path):
    (folder / "garbage.csv").write_text("x,y\n1,2,3,pv,0\n")
    reader = LandingReader(folder, tmp_path / "cache")
    assert reader.unroutable_files() == ["garbage.csv"]
    assert reader.file_days("garbage.csv") == []
    assert read_whole(reader).n_read == 3 * 40


def test_late_file_touches_its_day_only_and_keeps_other_seqs(folder, tmp_path):
    before = read_whole(LandingReader(folder, tmp_path / "cache")).interactions
    day = DAY0 + timedelta(days=1)
    _taobao_day(folder / f"{day}-late.csv", day, 5)
    reader = LandingReader(folder, tmp_path / "cache")
    assert reader.file_days(f"{day}-late.csv") == [day]
    after = read_whole(reader).interactions
    assert after.height == before.height + 5
    kept = after.join(before.select("seq"), on="seq", how="semi")
    assert kept.height == before.height  # the files already there keep their seq values


def test_future_days_and_catalogue(folder, tmp_path):
    _taobao_day(folder / "future.csv", DAY0 + timedelta(days=3), 40)
    reader = LandingReader(folder, tmp_path / "cache", today=DAY0 + timedelta(days=1))
    assert max(reader.days()) == DAY0 + timedelta(days=2)  # nothing past today + 1 day
    pl.DataFrame({"item_id": [100, 999], "title": ["a", "b"]}).write_parquet(folder / "items.parquet")
    reader = LandingReader(folder, tmp_path / "cache")
    items = reader.items()
    assert {100, 999} <= set(items["item_id"]) and set(range(100, 113)) <= set(items["item_id"])
    assert items["item_id"].is_unique().all()
    assert reader.users()["user_id"].to_list() == list(range(1, 8))
    assert "items.parquet" not in [f.name for f in list_landing_files(folder)]


def test_open_reader_and_missing_folder(tmp_path, folder):
    assert open_reader(f"landing:{folder}", tmp_path / "cache").name == "landing"
    with pytest.raises(SourceError, match="landing folder not found"):
        LandingReader(tmp_path / "nowhere", tmp_path / "cache")
