"""The co-occurrence index as one SQL statement (sql/index/cooc_neighbours.sql) on DuckDB and on Spark,
against the Python/C++ builder recsys.channels.item_index.build_cooc_index with its defaults.

Tolerances. The builder sums float32 products (sparse_dot_topn's kernel, float32 operands); the
statement sums in DOUBLE. Scores agree within SCORE_REL (measured: 3.6e-7 on synthetic:30000, 4.0e-6
on a 1M-event synthetic log, where popular pairs sum thousands of float32 terms);
raw counts are integers and agree exactly. Neighbour lists must be identical except where two
scores lie within TIE_REL of each other (a tie, or a near tie that float32 summation may order
either way): there the two lists may swap the tied neighbours, and at the depth cut they may keep
different ones of the tied candidates. Exact ties at the cut are not even broken by the builder's
own rule: its kernel keeps the top depth + 1 products and picks among tied ones at that boundary
by itself, while its final sort (score, support, first appearance) is what the statement
reproduces, so the statement equals the builder run deeper and cut to the depth.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field

import duckdb
import numpy as np
import polars as pl
import pytest

from recsys.channels.base import EVENT_WEIGHTS, event_weight_expr
from recsys.channels.item_index import build_cooc_index
from resources.engine import SqlEngine, to_spark_sql
from resources.warehouse import load_sql

pytestmark = pytest.mark.heavy(30)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

SQL = "index/cooc_neighbours"
SCORE_REL = 1e-5  # float32 products and sums in the builder vs DOUBLE in SQL
TIE_REL = 1e-6  # scores this close are a tie for the order comparison
DAY_US = 86_400_000_000
SPLIT_COLUMNS = ["user_id", "item_id", "event_type", "value", "ts", "event_date", "session_id", "source", "seq", "fold"]


# ----------------------------------------------------------------------------------------------
# Helpers: the histories, both runners and the tie-aware comparison
# ----------------------------------------------------------------------------------------------


def _fold(frame: pl.DataFrame, valid_from: dt.date, test_from: dt.date) -> pl.DataFrame:
    fold = pl.when(pl.col("event_date") < valid_from).then(pl.lit("train"))
    fold = fold.when(pl.col("event_date") < test_from).then(pl.lit("valid")).otherwise(pl.lit("test"))
    return frame.with_columns(fold.alias("fold")).select(SPLIT_COLUMNS)


def planted_split(seed: int = 7) -> pl.DataFrame:
    """A staging.split with every case the statement must get right: users in sessions (sessions that
    interleave in time), users without sessions (pseudo-sessions cut at gaps over 24 h, and a gap of
    exactly 24 h that is no cut), users with both, every event type plus an unknown one (weight 1.0),
    events at the same ts ordered by seq, a few null seqs, and heavy users above a cap of 5 items
    who touch old items again (the cap keeps the last touched)."""
    rng = np.random.default_rng(seed)
    types = ["view", "view", "view", "click", "rate", "fav", "cart", "buy", "share"]
    gaps_min = [90, 23 * 60, 24 * 60, 24 * 60, 24 * 60 + 1, 30 * 60]  # 24 h exactly: same pseudo-session
    popularity = 1.0 / np.arange(1, 31) ** 0.7
    popularity /= popularity.sum()
    rows: list[tuple] = []
    for user in range(1, 46):
        kind = "session" if user <= 15 else "none" if user <= 30 else "mixed" if user <= 40 else "heavy"
        t = dt.datetime(2020, 1, 1) + dt.timedelta(minutes=int(rng.integers(0, 6 * 24 * 60)))
        sessions: list[int] = []
        for burst in range(int(rng.integers(2, 6))):
            sid = None if kind in ("none", "heavy") or (kind == "mixed" and burst % 2) else int(rng.integers(1, 10**12))
            if sid is not None:
                sessions.append(sid)
            for event in range(int(rng.integers(1, 7 if kind != "heavy" else 12))):
                if event:
                    t += dt.timedelta(minutes=int(rng.integers(0, 40)))  # 0: same ts, seq decides
                item = int(rng.choice(30, p=popularity)) + 1 if kind != "heavy" else int(rng.integers(1, 31))
                if sessions and rng.random() < 0.2:  # an event of an earlier session: sessions interleave
                    sid_here = sessions[int(rng.integers(0, len(sessions)))]
                else:
                    sid_here = sid
                rows.append((user, item, str(rng.choice(types)), t, sid_here))
            t += dt.timedelta(minutes=int(rng.choice(gaps_min)))  # from the burst's last event
    frame = pl.DataFrame(
        rows,
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "event_type": pl.String, "ts": pl.Datetime("us"), "session_id": pl.Int64},
        orient="row",
    )
    seq = rng.permutation(frame.height).astype(np.int64) + 1
    frame = frame.with_columns(pl.Series("seq", seq), pl.lit(1.0).alias("value"), pl.lit("planted").alias("source"))
    # a few null seqs (sorted first among events at their ts), never two at one ts
    nulls = frame.with_row_index("r").unique("ts", keep="first").sample(4, seed=seed)["r"]
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()).is_in(nulls.implode())).then(None).otherwise(pl.col("seq")).alias("seq"))
    frame = frame.with_columns(pl.col("ts").dt.date().alias("event_date"))
    return _fold(frame, dt.date(2020, 1, 8), dt.date(2020, 1, 10))


def synthetic_split(n_interactions: int = 30_000) -> pl.DataFrame:
    """The synthetic log (sessions, Taobao event types) as staging.split: 20 days train, 5 valid, 5 test."""
    from recsys.synthetic import SyntheticConfig, SyntheticReader

    cfg = SyntheticConfig(n_interactions=n_interactions, seed=0)
    log = SyntheticReader(cfg).read_window(cfg.start, cfg.start + dt.timedelta(days=cfg.n_days - 1)).interactions
    return _fold(log, cfg.start + dt.timedelta(days=20), cfg.start + dt.timedelta(days=25))


def history(split: pl.DataFrame, with_valid: bool) -> pl.DataFrame:
    """The builder's input: the history folds in the canonical event order (ts, seq; null seq first)."""
    folds = ["train", "valid"] if with_valid else ["train"]
    return split.filter(pl.col("fold").is_in(folds)).sort("ts", "seq", nulls_last=False)


def params(depth: int, with_valid: bool = False, window_us: int = DAY_US, max_items: int = 200) -> dict:
    return {"depth": depth, "with_valid": with_valid, "window_us": window_us, "max_items": max_items}


def on_duckdb(split: pl.DataFrame, p: dict, sql: str = SQL) -> pl.DataFrame:
    """The statement ``sql`` (default the co-occurrence one) over ``split`` as staging.split, in DuckDB."""
    with duckdb.connect() as con:
        con.register("split_frame", split.to_arrow())
        con.execute("CREATE SCHEMA staging; CREATE TABLE staging.split AS SELECT * FROM split_frame")
        return con.execute(load_sql(sql), p).pl()


def on_spark(engine: SqlEngine, split: pl.DataFrame, p: dict, sql: str = SQL) -> pl.DataFrame:
    """The statement ``sql`` on Spark, ``split`` written to the engine's lake as staging.split first."""
    days = sorted({d.isoformat() for d in split["event_date"].to_list()})
    engine.lake.write_days("staging.split", split, days)
    rows = engine.spark_query(sql, p).collect()
    schema = {"item_id": pl.Int64, "neighbour_id": pl.Int64, "score": pl.Float64, "count": pl.Float64, "rank": pl.Int32}
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


@dataclass
class Agreement:
    items: int = 0
    identical: int = 0
    max_score_rel: float = 0.0
    count_mismatches: int = 0
    unexplained: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.identical / max(self.items, 1)


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def agreement(want: pl.DataFrame, got: pl.DataFrame, depth: int, score_rel: float = SCORE_REL, tie_rel: float = TIE_REL) -> Agreement:
    """Per item, ``got``'s list against ``want``'s (both item_id, neighbour_id, score, count, rank).

    Identical: the same neighbours in the same order. Otherwise every difference must be a tie: the
    two lists hold the same number of neighbours and the same scores rank by rank (within
    ``score_rel``); where their neighbours differ at a rank, the two scores there are within
    ``tie_rel``, and a neighbour missing from one list scores within ``tie_rel`` of that list's last
    score, which is full (cut at ``depth``). Raw counts of the pairs in both must be equal."""
    out = Agreement()
    both = want.join(got, on=["item_id", "neighbour_id"], suffix="_got")
    if both.height:
        out.max_score_rel = float(((both["score"] - both["score_got"]).abs() / both["score"]).max())
        out.count_mismatches = both.filter(pl.col("count") != pl.col("count_got")).height
    lists = {}
    for name, frame in (("want", want), ("got", got)):
        grouped = frame.sort("item_id", "rank").group_by("item_id", maintain_order=True).agg("neighbour_id", "score")
        lists[name] = {item: (ids, scores) for item, ids, scores in grouped.iter_rows()}
    for item in sorted(set(lists["want"]) | set(lists["got"])):
        out.items += 1
        (w_ids, w_sc), (g_ids, g_sc) = lists["want"].get(item, ([], [])), lists["got"].get(item, ([], []))
        if w_ids == g_ids:
            out.identical += 1
            continue
        problems = []
        if len(w_ids) != len(g_ids):
            problems.append(f"{len(w_ids)} vs {len(g_ids)} neighbours")
        for r, (a, b) in enumerate(zip(w_sc, g_sc)):
            if not _close(a, b, score_rel):
                problems.append(f"rank {r + 1} scores {a} vs {b}")
            elif w_ids[r] != g_ids[r] and not _close(a, b, tie_rel):
                problems.append(f"rank {r + 1}: {w_ids[r]} vs {g_ids[r]} at untied scores {a} vs {b}")
        for ids, scores, other_ids, other_sc in ((w_ids, w_sc, g_ids, g_sc), (g_ids, g_sc, w_ids, w_sc)):
            for n, s in zip(ids, scores):
                if n not in other_ids and not (len(other_ids) == depth and _close(s, other_sc[-1], tie_rel)):
                    problems.append(f"neighbour {n} ({s}) dropped though not tied with the cut")
        if problems:
            out.unexplained.append(f"item {item}: " + "; ".join(problems))
    return out


def _assert_agrees(a: Agreement, score_rel: float = SCORE_REL, min_share: float = 0.0) -> None:
    assert a.count_mismatches == 0
    assert a.max_score_rel <= score_rel, a.max_score_rel
    assert not a.unexplained, a.unexplained[:5]
    assert a.share >= min_share, f"{a.identical}/{a.items} identical lists"


# ----------------------------------------------------------------------------------------------
# (c) the weights written in the SQL
# ----------------------------------------------------------------------------------------------


def test_the_event_weights_in_the_statement_mirror_EVENT_WEIGHTS():
    """The statement's VALUES list of weights, run on its own, is EVENT_WEIGHTS, and an unknown type
    weighs what the builder gives it (1.0): drift in either place fails here. (Read from the text, so
    that this check needs neither SQLGlot nor Spark.)"""
    text = load_sql(SQL)
    values = re.search(r"FROM \((VALUES .*?)\) AS t\(event_type, weight\)", text)
    default = re.search(r"COALESCE\(ew\.weight, (.*?)\) AS w\b", text)
    assert values and default, "sql/index/cooc_neighbours.sql: the event_weights VALUES list or its default moved"
    with duckdb.connect() as con:
        in_sql = dict(
            con.execute(f"SELECT event_type, CAST(weight AS DOUBLE) FROM ({values.group(1)}) AS t(event_type, weight)").fetchall()
        )
        default_in_sql = con.execute(f"SELECT {default.group(1)}").fetchone()[0]
    assert in_sql == EVENT_WEIGHTS
    unknown = pl.DataFrame({"event_type": ["share"]}).select(event_weight_expr()).item()
    assert default_in_sql == unknown == 1.0


# ----------------------------------------------------------------------------------------------
# (a) DuckDB against the builder
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted() -> pl.DataFrame:
    split = planted_split()
    assert split["fold"].n_unique() == 3 and split["seq"].null_count() == 4 and split["session_id"].null_count() > 0
    return split


def window_us(window_hours: float | None) -> int:
    """The builder's gap in microseconds (int(window_hours * 3600e6)); None: no cut, one pseudo-session."""
    return int(window_hours * 3600e6) if window_hours is not None else 10**15


@pytest.mark.parametrize("with_valid", [False, True])
@pytest.mark.parametrize(
    ("window_hours", "cap"),
    [(24.0, 5), (24.0, None), (24.0 - 1 / 60, None), (None, 5)],
    ids=["24h-cap5", "24h-uncapped", "23h59-uncapped", "one-basket-cap5"],
)
def test_the_statement_gives_the_builders_neighbours_on_a_planted_history(planted, with_valid, window_hours, cap):
    """Sessions, pseudo-sessions, caps, weights and ties at depth 5: the builder's lists up to ties, also
    against the builder keeping every neighbour (no cut inside its kernel) and cut to 5 afterwards."""
    depth = 5
    hist = history(planted, with_valid)
    got = on_duckdb(planted, params(depth, with_valid, window_us(window_hours), cap or 10**9))
    kw = {"window_hours": window_hours, "max_items_per_user": cap, "exact_ties": True}
    at_depth = agreement(build_cooc_index(hist, depth, **kw).neighbours(), got, depth)
    full = agreement(build_cooc_index(hist, hist["item_id"].n_unique(), **kw).neighbours(depth=depth), got, depth)
    print(
        f"planted {window_hours} {cap} {with_valid}: {at_depth.identical}/{at_depth.items} identical, {full.identical} against the full builder"
    )
    # many exact ties in so small a history: at depth 5 a tie at the cut is common, and a mathematical tie
    # that float32 sums split by one ulp may come out in either order (seen with other seeds)
    _assert_agrees(at_depth, min_share=0.9)
    _assert_agrees(full, min_share=0.9)


def test_the_planted_cases_change_the_index(planted):
    """The planted history exercises what it claims: gaps of exactly 24 h (no cut) and just over it
    between sessionless events, and the cap, the window and the valid fold each change the lists."""
    sessionless = history(planted, False).filter(pl.col("session_id").is_null())
    gaps = sessionless.select(pl.col("ts").diff().over("user_id").dt.total_minutes())["ts"]
    assert (gaps == 24 * 60).sum() > 0 and (gaps == 24 * 60 + 1).sum() > 0

    def lists(split_with_valid=False, **kw):
        hist = history(planted, split_with_valid)
        return build_cooc_index(hist, 30, **kw).neighbours()

    base = lists(max_items_per_user=None)
    assert not base.equals(lists(max_items_per_user=5))
    assert not base.equals(lists(max_items_per_user=None, window_hours=24.0 - 1 / 60))
    assert not base.equals(lists(max_items_per_user=None, window_hours=None))
    assert not base.equals(lists(True, max_items_per_user=None))


@pytest.fixture(scope="module")
def synthetic() -> pl.DataFrame:
    return synthetic_split()


def test_the_statement_gives_the_builders_neighbours_on_synthetic_30000(synthetic):
    """Default parameters at depth 50 on the synthetic log, the builder deciding ties at its cut by its
    order (``exact_ties``): identical lists for every item (measured 1066 of 1066; with the kernel
    deciding them, 1065), and the builder run deeper then cut to 50 agrees on every list."""
    depth = 50
    hist = history(synthetic, False)
    got = on_duckdb(synthetic, params(depth))
    at_depth = agreement(build_cooc_index(hist, depth, exact_ties=True).neighbours(), got, depth)
    deeper = agreement(build_cooc_index(hist, depth + 10).neighbours(depth=depth), got, depth)
    print(
        f"synthetic:30000 depth {depth}: {at_depth.identical}/{at_depth.items} identical lists ({at_depth.share:.4f}), "
        f"{deeper.identical}/{deeper.items} against the builder at depth {depth + 10} cut to {depth}; "
        f"max score rel err {at_depth.max_score_rel:.2e}"
    )
    assert got.height > 30_000
    _assert_agrees(at_depth, min_share=1.0)
    _assert_agrees(deeper, min_share=0.99)


# ----------------------------------------------------------------------------------------------
# (b) Spark runs the same statement
# ----------------------------------------------------------------------------------------------


def assert_transpiles_reading_one_view(sql: str, placeholders: set[str]) -> None:
    """``sql`` transpiles to Spark reading only the staging.split view, with exactly ``placeholders``."""
    sqlglot = pytest.importorskip("sqlglot", reason="the spark extra (requirements-test.lock installs it)")
    text, tables = to_spark_sql(load_sql(sql))
    assert tables == ["staging.split"] and "staging__split" in text
    assert {p.name for p in sqlglot.parse_one(text, read="spark").find_all(sqlglot.exp.Placeholder)} == placeholders


def test_the_statement_transpiles_to_spark_reading_one_view():
    assert_transpiles_reading_one_view(SQL, set(params(1)))


def _spark_against_duckdb(split: pl.DataFrame, p: dict, lake) -> Agreement:
    engine = SqlEngine(engine="spark", lake_dir=str(lake))
    started = time.perf_counter()
    got = on_spark(engine, split, p)
    print(f"on Spark: {got.height} rows in {time.perf_counter() - started:.1f} s")
    assert got.height > 0
    return agreement(on_duckdb(split, p), got, p["depth"], score_rel=1e-9)


def test_spark_gives_duckdbs_neighbours_on_the_planted_history(planted, tmp_path):
    """The same statement on Spark local mode over the lake's day-partitions (null seqs, sessionless
    gaps, the cap, the valid fold through the boolean parameter): DuckDB's lists. Both sum in DOUBLE,
    so scores agree to 1e-9; the order within TIE_REL ties is the comparison's only slack."""
    pytest.importorskip("pyspark", reason="the spark extra (requirements-test.lock installs it)")
    _assert_agrees(_spark_against_duckdb(planted, params(5, True, DAY_US, 5), tmp_path / "lake"), score_rel=1e-9, min_share=1.0)


def test_spark_gives_duckdbs_neighbours_on_synthetic_30000(synthetic, tmp_path):
    """synthetic:30000 at depth 50 with the defaults on Spark: DuckDB's lists."""
    pytest.importorskip("pyspark", reason="the spark extra (requirements-test.lock installs it)")
    _assert_agrees(_spark_against_duckdb(synthetic, params(50), tmp_path / "lake"), score_rel=1e-9, min_share=0.99)
