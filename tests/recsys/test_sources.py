"""Dataset parsers: rows kept, quarantine reasons, loaded + quarantined == read, layouts agree."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.schema import INTERACTION_SCHEMA, QUARANTINE_SCHEMA
from recsys.sources import UNROUTABLE, ParsedBatch, SourceError, open_reader
from recsys.sources.lines import DayCache, finalize, read_whole, route, scan_raw_lines, sessionize
from recsys.sources.movielens import GENRES, open_movielens
from recsys.sources.recbole import read_atomic, read_benchmark_split
from recsys.sources.taobao import TaobaoReader, taobao_format

T0 = 881250949  # 1997-12-04 UTC


def _unix(dt: datetime) -> int:
    return int((dt - datetime(1970, 1, 1)).total_seconds())


# (user, item, rating, ts) valid ratings, spread over three days
GOOD = [
    (196, 242, 3.0, T0),
    (186, 302, 3.0, T0 + 60),
    (22, 377, 1.0, T0 + 86_400),
    (244, 51, 2.0, T0 + 86_400 + 5),
    (166, 346, 1.0, T0 + 2 * 86_400),
    (298, 474, 4.5, T0 + 2 * 86_400 + 1),
]
# malformed u.data lines and the reason each must produce
BAD_TAB = [
    ("196\t242\t3", "column count 3, expected 4"),
    ("abc\t242\t3\t881250949", "user_id 'abc' is not an integer"),
    ("196\t-5\t3\t881250949", "item_id -5 is negative"),
    ("196\t242\t7\t881250949", "rating 7 outside [0.5, 5]"),
    ("196\t242\tx\t881250949", "rating 'x' is not a number"),
    ("196\t242\t3\tyesterday", "timestamp 'yesterday' is not a unix time"),
]


def _tab_lines(rows) -> list[str]:
    return [f"{u}\t{i}\t{r:g}\t{t}" for u, i, r, t in rows]


def _write_ml100k(d: Path, bad: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    lines = _tab_lines(GOOD)
    if bad:
        lines = lines[:2] + [b for b, _ in BAD_TAB] + [""] + lines[2:]
    (d / "u.data").write_text("\n".join(lines) + "\n")
    flags = lambda on: "|".join("1" if j in on else "0" for j in range(19))  # noqa: E731
    items = [
        f"242|Kolya (1996)|24-Jan-1997||http://x|{flags({5})}",  # Comedy
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://x|{flags({6, 13, 16})}",  # Crime Mystery Thriller
        f"51|Legends of the Fall (1994)|01-Jan-1994||http://x|{flags({14, 17, 18, 8})}",  # Drama first in flag order
        "543|Misérables, Les (1995)|01-Jan-1995||http://x|" + flags({8, 12}),  # latin-1 é
        f"267|unknown||||{flags({0})}",
    ]
    (d / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (d / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return d


def _write_recbole(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + _tab_lines(GOOD)
    (d / "ml-100k.inter").write_text("\n".join(inter) + "\n")
    item = [
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
        "242\tKolya\t1996\tComedy",
        "302\tL.A. Confidential\t1997\tCrime Mystery Thriller",
        "51\tLegends of the Fall\t1994\tDrama Romance War Western",
        "543\tMisérables, Les\t1995\tDrama Musical",
        "267\tunknown\t\tunknown",
    ]
    (d / "ml-100k.item").write_text("\n".join(item) + "\n", encoding="utf-8")
    user = [
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
        "1\t24\tM\ttechnician\t85711",
        "2\t53\tF\tother\t94043",
    ]
    (d / "ml-100k.user").write_text("\n".join(user) + "\n")
    return d


def _check_batch(b: ParsedBatch) -> None:
    assert b.interactions.schema == pl.Schema(INTERACTION_SCHEMA)
    assert b.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert b.n_read == b.interactions.height + b.quarantine.height


def test_ml100k_rows_reasons_and_accounting(tmp_path):
    d = _write_ml100k(tmp_path / "ml-100k")
    reader = open_reader(f"movielens:{d}", tmp_path / "cache")
    assert reader.name == "movielens-100k"
    lo, hi = reader.date_bounds()
    assert (lo, hi) == (date(1997, 12, 4), date(1997, 12, 6))

    whole = read_whole(reader)
    _check_batch(whole)
    assert whole.n_read == len(GOOD) + len(BAD_TAB) + 1  # every data line, the blank one included
    got = whole.interactions.select("user_id", "item_id", "value").rows()
    assert got == [(u, i, r) for u, i, r, _ in GOOD]
    assert set(whole.interactions["event_type"]) == {"rate"}
    assert whole.interactions["session_id"].null_count() == whole.interactions.height
    assert whole.interactions["ts"][0] == datetime(1997, 12, 4, 15, 55, 49)
    reasons = dict(zip(whole.quarantine["raw_line"], whole.quarantine["reason"]))
    for raw, reason in BAD_TAB:
        assert reasons[raw] == reason
    assert reasons[""] == "empty line"
    # lines with a parsable day are routed to it; the rest are unroutable
    part = dict(zip(whole.quarantine["raw_line"], whole.quarantine["partition"]))
    assert part["abc\t242\t3\t881250949"] == "1997-12-04"
    assert part["196\t242\t3\tyesterday"] == UNROUTABLE and part["196\t242\t3"] == UNROUTABLE
    assert set(whole.quarantine["source"]) == {str(d / "u.data")}
    assert whole.quarantine.filter(pl.col("raw_line") == "196\t-5\t3\t881250949")["line_no"][0] == 5

    # daily partitions add up; unroutable lines come only with the first day
    days = [reader.read_window(lo + timedelta(days=k), lo + timedelta(days=k)) for k in range(3)]
    for b in days:
        _check_batch(b)
    assert sum(b.n_read for b in days) == whole.n_read
    assert days[1].quarantine.filter(pl.col("partition") == UNROUTABLE).height == 0
    assert days[0].quarantine.filter(pl.col("partition") == UNROUTABLE).height == 3
    assert days[2].interactions["event_date"].unique().to_list() == [date(1997, 12, 6)]


def test_ml100k_items_users_latin1_and_genres(tmp_path):
    reader = open_movielens(_write_ml100k(tmp_path / "ml-100k"), tmp_path / "cache")
    items = reader.items().sort("item_id")
    row = items.filter(pl.col("item_id") == 543).row(0, named=True)
    assert row["title"] == "Misérables, Les" and row["year"] == 1995
    assert row["genres"] == "Drama|Musical" and row["category_id"] == GENRES.index("Drama")
    la = items.filter(pl.col("item_id") == 302).row(0, named=True)
    assert la["genres"] == "Crime|Mystery|Thriller" and la["category_id"] == GENRES.index("Crime")
    unknown = items.filter(pl.col("item_id") == 267).row(0, named=True)
    assert unknown["category_id"] is None and unknown["genres"] == ""
    users = reader.users()
    assert users.columns == ["user_id", "age", "gender", "occupation", "zip"]
    assert users.row(1) == (2, 53, "F", "other", "94043")


def test_recbole_layout_matches_official_ml100k(tmp_path):
    official = open_movielens(_write_ml100k(tmp_path / "a" / "ml-100k", bad=False), tmp_path / "c1")
    recbole = open_reader(f"movielens-100k:{_write_recbole(tmp_path / 'b' / 'ml-100k')}", tmp_path / "c2")
    assert recbole.name == "movielens-100k"
    assert recbole.date_bounds() == official.date_bounds()
    a, b = read_whole(official), read_whole(recbole)
    assert a.interactions.drop("seq").equals(b.interactions.drop("seq"))
    # seq is the line number: the RecBole file's header shifts it by one, the order is the same
    assert (b.interactions["seq"] - a.interactions["seq"]).unique().to_list() == [1]
    cols = ["item_id", "category_id", "title", "year"]
    assert official.items().sort("item_id").select(cols).equals(recbole.items().sort("item_id").select(cols))
    assert official.users().equals(recbole.users())


def test_recbole_read_atomic_types_and_benchmark_split(tmp_path):
    d = _write_recbole(tmp_path / "ml-100k")
    item = read_atomic(d / "ml-100k.item")
    assert item.schema["movie_title"] == pl.List(pl.Utf8)
    assert item.filter(pl.col("item_id") == "302")["class"][0].to_list() == ["Crime", "Mystery", "Thriller"]
    inter = read_atomic(d / "ml-100k.inter")
    assert inter.schema["rating"] == pl.Float64 and inter.height == len(GOOD)

    split = tmp_path / "split"
    split.mkdir()
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    lines = _tab_lines(GOOD)
    (split / "ml-100k.train.inter").write_text("\n".join([header, *lines[:4]]) + "\n")
    (split / "ml-100k.valid.inter").write_text("\n".join([header, lines[4], "9\tzz\t1\t881250949"]) + "\n")
    (split / "ml-100k.test.inter").write_text("\n".join([header, lines[5]]) + "\n")
    out = read_benchmark_split(split)
    assert [out[s].interactions.height for s in ("train", "valid", "test")] == [4, 1, 1]
    assert out["valid"].quarantine["reason"].to_list() == ["item_id 'zz' is not an integer"]
    assert out["test"].interactions["value"].to_list() == [4.5]
    with pytest.raises(SourceError, match="test.inter"):
        (split / "ml-100k.test.inter").unlink()
        read_benchmark_split(split)


def test_ml1m_double_colon_latin1(tmp_path):
    d = tmp_path / "ml-1m"
    d.mkdir()
    ts = 978300760
    (d / "ratings.dat").write_text(f"1::1193::5::{ts}\n1::661::3::{ts + 10}\n2::1193::0::{ts}\n1:1193:5:{ts}\n")
    (d / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "2::Café au lait (1993)::Comedy\n".encode("latin-1")
    )
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    reader = open_reader(f"ml-1m:{d}", tmp_path / "cache")
    assert reader.name == "movielens-1m"
    b = read_whole(reader)
    _check_batch(b)
    assert b.interactions.select("user_id", "item_id", "value").rows() == [(1, 1193, 5.0), (1, 661, 3.0)]
    assert sorted(b.quarantine["reason"]) == ["column count 1, expected 4", "rating 0 outside [0.5, 5]"]
    items = reader.items().sort("item_id")
    assert items["title"].to_list() == ["Café au lait", "James and the Giant Peach", "One Flew Over the Cuckoo's Nest"]
    assert items.filter(pl.col("item_id") == 661)["genres"][0] == "Animation|Children|Musical"
    users = reader.users()
    assert users.row(0) == (1, 1, "F", "K-12 student", "48067")


def _write_latest(d: Path) -> Path:
    d.mkdir(parents=True)
    ts = 964982703
    rows = ["userId,movieId,rating,timestamp"]
    good = [(1, 1, 4.0), (1, 3, 0.5), (2, 1, 5.0), (3, 11, 3.5)]
    rows += [f"{u},{i},{r},{ts + k * 43_200}" for k, (u, i, r) in enumerate(good)]
    rows += ["3,11,5.5,964982703", "3,11,4.0", '4,"1",4.0,964982703']
    (d / "ratings.csv").write_text("\n".join(rows) + "\n")
    (d / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n3,Grumpier Old Men (1995),Comedy|Romance\n'
        "5,Some Film,(no genres listed)\n"
    )
    return d


def test_ml_latest_csv_and_day_cache_agree(tmp_path):
    d = _write_latest(tmp_path / "ml-latest-small")
    mem = open_movielens(d, tmp_path / "c")
    cached = open_movielens(d, tmp_path / "c", cache_threshold_bytes=0, batch_size=3)
    assert mem.name == cached.name == "movielens-latest-small"
    assert isinstance(cached.store, DayCache) and max(cached.store.manifest["batch_rows"]) <= 3
    a, b = read_whole(mem), read_whole(cached)
    _check_batch(a)
    assert a.interactions.equals(b.interactions) and a.quarantine.equals(b.quarantine)
    assert a.interactions.height == 4 and a.n_read == 7  # header is not a data line
    assert sorted(a.quarantine["reason"]) == [
        "column count 3, expected 4",
        "item_id '\"1\"' is not an integer",  # quotes are not interpreted on the ratings path
        "rating 5.5 outside [0.5, 5]",
    ]
    assert a.quarantine["line_no"].sort().to_list() == [6, 7, 8]
    items = mem.items().sort("item_id")
    assert items.filter(pl.col("item_id") == 11)["title"][0] == "American President, The"
    assert items.filter(pl.col("item_id") == 5)["category_id"][0] is None
    assert items.filter(pl.col("item_id") == 1)["category_id"][0] == GENRES.index("Adventure")
    assert mem.users()["user_id"].to_list() == [1, 2, 3]


def test_missing_sources_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SourceError, match=str(missing)) as err:
        open_reader(f"movielens:{missing}", tmp_path)
    assert "u.data/u.item/u.user" in str(err.value)
    partial = tmp_path / "ml-100k"
    partial.mkdir()
    (partial / "u.data").write_text("1\t1\t1\t881250949\n")
    with pytest.raises(SourceError, match=r"missing \['u.item', 'u.user'\]"):
        open_reader(f"movielens:{partial}", tmp_path)
    with pytest.raises(SourceError, match="Taobao file not found"):
        open_reader(f"taobao:{tmp_path / 'UserBehavior.csv'}", tmp_path)
    with pytest.raises(SourceError, match="unknown source kind"):
        open_reader("criteo:/x", tmp_path)


def _write_taobao(path: Path, n: int, seed: int = 0) -> tuple[int, list[str]]:
    """n valid lines over 2017-11-25..27 UTC plus malformed and stray-day lines."""
    rng = np.random.default_rng(seed)
    start = _unix(datetime(2017, 11, 25))
    frame = pl.DataFrame(
        {
            "u": rng.integers(1, 500, n),
            "i": rng.integers(1, 5000, n),
            "c": rng.integers(1, 50, n),
            "b": np.array(["pv", "pv", "pv", "cart", "fav", "buy"])[rng.integers(0, 6, n)],
            "t": rng.integers(start, start + 3 * 86_400, n),
        }
    )
    bad = [
        "1,2,3",
        "1,2,3,zz,1511568000",
        "-1,2,3,pv,1511568000",
        "1,2,x,pv,1511568000",
        "1,2,3,pv,abc",
        "1,2,3,pv,12",  # 1970: a stray day outside the declared bounds
    ]
    body = frame.select(pl.concat_str(pl.all().cast(pl.Utf8), separator=","))[:, 0].to_list()
    lines = body[: n // 2] + bad + body[n // 2 :]
    path.write_text("\n".join(lines) + "\n")
    return n, bad


def test_taobao_streaming_cache_matches_full_parse(tmp_path):
    path = tmp_path / "UserBehavior.csv"
    n, bad = _write_taobao(path, 200_000)
    reader = open_reader(f"taobao:{path}", tmp_path / "cache")
    assert reader.name == "taobao"
    # a small batch size: the pass never holds more than one batch of lines
    reader = TaobaoReader(path, tmp_path / "cache_small", batch_size=20_000)
    rows = reader.cache.manifest["batch_rows"]
    assert len(rows) == 11 and max(rows) <= 20_000 and sum(rows) == n + len(bad)
    assert reader.date_bounds() == (date(2017, 11, 25), date(2017, 11, 27))

    days = [date(2017, 11, 25) + timedelta(days=k) for k in range(3)]
    windows = [reader.read_window(day, day) for day in days]
    for b in windows:
        _check_batch(b)
    got = ParsedBatch.concat(windows)
    assert got.n_read == n + len(bad)

    # reference: the whole file parsed in memory at once
    parsed = taobao_format().parse(scan_raw_lines(path))
    ref = finalize(route(parsed, reader.date_bounds(), rule=reader.rule).collect(), source_name="taobao", source_path=str(path),
                   session_gap=timedelta(minutes=30))  # fmt: skip
    key = ["ts", "user_id", "item_id", "event_type"]
    assert got.interactions.sort(key).equals(ref.interactions.sort(key))
    assert got.quarantine.sort("line_no").equals(ref.quarantine.sort("line_no"))
    reasons = dict(zip(got.quarantine["raw_line"], got.quarantine["reason"]))
    assert reasons["1,2,3,zz,1511568000"] == "behavior_type 'zz' not in pv|cart|fav|buy"
    assert reasons["1,2,x,pv,1511568000"] == "category_id 'x' is not an integer"
    assert reasons["1,2,3,pv,12"] == (
        "timestamp_out_of_range: event_date 1970-01-01 outside the plausible window [2017-11-25, 2017-11-27]"
        " (1%/99% day quantiles padded by max(2 d, 25% of their span))"
    )
    assert windows[0].quarantine.filter(pl.col("partition") == UNROUTABLE).height == 3
    assert windows[1].quarantine.height == 0 and windows[2].quarantine.height == 0
    assert set(got.interactions["event_type"]) == {"view", "cart", "fav", "buy"}
    assert reader.items().height == got.interactions["item_id"].n_unique()

    # a second reader reuses the cache; a changed file rebuilds it
    built = []
    orig = DayCache._build
    DayCache._build = staticmethod(lambda *a, **k: built.append(1) or orig(*a, **k))
    try:
        TaobaoReader(path, tmp_path / "cache_small", batch_size=20_000)
        assert built == []
        with open(path, "a") as fh:
            fh.write("7,7,7,buy,1511568000\n")
        again = TaobaoReader(path, tmp_path / "cache_small", batch_size=20_000)
        assert built == [1] and again.cache.manifest["n_read"] == n + len(bad) + 1
    finally:
        DayCache._build = orig


def test_sessions_split_at_30_minute_gaps_and_midnight():
    ts = [datetime(2017, 11, 25, 10, 0), datetime(2017, 11, 25, 10, 29), datetime(2017, 11, 25, 11, 0),
          datetime(2017, 11, 25, 23, 59), datetime(2017, 11, 26, 0, 1), datetime(2017, 11, 25, 10, 5)]  # fmt: skip
    users = [1, 1, 1, 1, 1, 2]
    frame = pl.DataFrame({"user_id": users, "ts": ts}).with_columns(pl.col("ts").dt.date().alias("event_date"))
    sid = sessionize(frame, timedelta(minutes=30))["session_id"].to_list()
    assert sid[0] == sid[1] and len({sid[1], sid[2], sid[3], sid[4], sid[5]}) == 5
    # ids do not depend on which rows were read together
    alone = sessionize(frame.slice(2, 1), timedelta(minutes=30))["session_id"].to_list()
    assert alone == [sid[2]]


def test_open_reader_synthetic_spec(tmp_path):
    r = open_reader("synthetic:5000:7", tmp_path)
    assert r.name == "synthetic" and r.config.n_interactions == 5000 and r.config.seed == 7
    with pytest.raises(SourceError, match="synthetic"):
        open_reader("synthetic:lots", tmp_path)
