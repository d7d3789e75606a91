"""The Swing index as one SQL statement (sql/index/swing_neighbours.sql) on DuckDB and on Spark, against
the Python/C++ builder recsys.channels.item_index.build_swing_index with its defaults (alpha=1.0,
max_items_per_user=200, max_users_per_item=300), and with small caps on a planted history.

Tolerances. The builder sums float32 terms w_u w_v / (alpha + overlap) (float32 operands of
sparse_dot_topn's kernel); the statement sums in DOUBLE. Scores agree within SCORE_REL (measured:
3e-7 on the planted history, 2.6e-6 on synthetic:30000); raw counts (user pairs holding both items)
are integers and agree exactly. The builder resolves ties at the depth cut by its own rule (score,
then the target's support, then its dense position: _widen_tied_cuts), which the statement
reproduces (ranking on its DOUBLE score rounded to FLOAT), so lists are identical except where a
mathematical tie comes out of the builder's float32 sums split by an ulp: the builder then orders
by that ulp, the statement by the tie rule. The planted history, with its many exact ties at depth
5, shows two such lists (float32_ties_only checks that every difference is one); synthetic:30000
shows none, on DuckDB and on Spark (911 of 911 lists identical), and is asserted at 1.0. Spark
against DuckDB: both sum in DOUBLE, scores agree to 1e-9 (measured 2e-15) and every list is identical.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest
import test_engine_item_index as item_index_support
from test_engine_item_index import Agreement, _assert_agrees, agreement, history, planted_split, synthetic_split

from recsys.channels.item_index import build_swing_index
from resources.engine import SqlEngine

pytestmark = pytest.mark.heavy(60)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

SQL = "index/swing_neighbours"
NO_CAP = 10**9  # the builder's None for a cap


def params(depth: int, with_valid: bool = False, alpha: float = 1.0, max_items: int | None = 200, max_users: int | None = 300) -> dict:
    """The statement's parameters for the builder's arguments (None cap: NO_CAP)."""
    return {
        "depth": depth,
        "with_valid": with_valid,
        "alpha": float(alpha),
        "max_items": max_items or NO_CAP,
        "max_users": max_users or NO_CAP,
    }


def builder(split: pl.DataFrame, p: dict) -> pl.DataFrame:
    """build_swing_index on the history folds ``p`` selects, as a neighbours frame."""
    return build_swing_index(
        history(split, p["with_valid"]),
        p["depth"],
        alpha=p["alpha"],
        max_items_per_user=p["max_items"],
        max_users_per_item=p["max_users"],
        exact_ties=True,  # ties at the depth cut decided by the index's order, as the statement decides them
    ).neighbours()


def on_duckdb(split: pl.DataFrame, p: dict) -> pl.DataFrame:
    return item_index_support.on_duckdb(split, p, SQL)


def on_spark(engine: SqlEngine, split: pl.DataFrame, p: dict) -> pl.DataFrame:
    return item_index_support.on_spark(engine, split, p, SQL)


def _ulp(a: float, b: float) -> int:
    """Distance of two non-negative scores in float32 units in the last place."""
    return abs(int(np.float32(a).view(np.uint32)) - int(np.float32(b).view(np.uint32)))


def float32_ties_only(want: pl.DataFrame, got: pl.DataFrame, max_ulp: int = 2) -> list[str]:
    """Where ``got``'s list differs from the builder's (``want``), every swapped or exchanged neighbour
    scores, in the builder's own float32, within ``max_ulp`` of the one in its place: a mathematical
    tie that the builder's float32 sums split by an ulp (so its tie rule never saw it), which the
    statement, ranking on DOUBLE sums rounded to FLOAT, still breaks by support and first appearance."""
    problems = []
    lists = {}
    for name, frame in (("want", want), ("got", got)):
        grouped = frame.sort("item_id", "rank").group_by("item_id", maintain_order=True).agg("neighbour_id", "score")
        lists[name] = {item: (ids, scores) for item, ids, scores in grouped.iter_rows()}
    for item, (w_ids, w_sc) in lists["want"].items():
        g_ids = lists["got"].get(item, ([], []))[0]
        if w_ids == g_ids:
            continue
        builder_score = dict(zip(w_ids, w_sc))
        for r, (a, b) in enumerate(zip(w_ids, g_ids)):
            if a != b and _ulp(w_sc[r], builder_score.get(b, w_sc[-1])) > max_ulp:
                problems.append(f"item {item} rank {r + 1}: {a} ({w_sc[r]}) vs {b} ({builder_score.get(b)})")
    return problems


def _report(name: str, a: Agreement) -> None:
    print(f"{name}: {a.identical}/{a.items} identical lists ({a.share:.4f}), max score rel err {a.max_score_rel:.2e}")


# ----------------------------------------------------------------------------------------------
# The statement's text
# ----------------------------------------------------------------------------------------------


def test_the_statement_transpiles_to_spark_reading_one_view():
    item_index_support.assert_transpiles_reading_one_view(SQL, set(params(1)))


# ----------------------------------------------------------------------------------------------
# DuckDB against the builder
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted() -> pl.DataFrame:
    return planted_split()


@pytest.fixture(scope="module")
def synthetic() -> pl.DataFrame:
    return synthetic_split()


CAPS = [(200, 300), (5, None), (None, 6), (5, 6), (None, None)]


@pytest.mark.parametrize("with_valid", [False, True])
@pytest.mark.parametrize(("max_items", "max_users"), CAPS, ids=["defaults", "items5", "users6", "items5-users6", "uncapped"])
def test_the_statement_gives_the_builders_neighbours_on_a_planted_history(planted, with_valid, max_items, max_users):
    """Null seqs, events at one ts ordered by seq, heavy users over the user cap who touch old items
    again, popular items over the item cap, both caps together (the user cap first) and alpha=0.5: the
    builder's scores and counts at depth 5, and its lists except where a mathematical tie comes out of
    the builder's float32 sums split by one ulp (measured: 2 lists of 574 over these 20 runs, items5
    with the valid fold and items5-users6 on train, both at alpha=0.5; every other list identical)."""
    for alpha in (1.0, 0.5):
        p = params(5, with_valid, alpha, max_items, max_users)
        want, got = builder(planted, p), on_duckdb(planted, p)
        a = agreement(want, got, p["depth"])
        _report(f"planted {p}", a)
        _assert_agrees(a, min_share=0.9)
        assert not float32_ties_only(want, got)


def test_the_planted_caps_change_the_index(planted):
    """The planted history exercises the caps: each one, and their order, changes the lists."""
    lists = {caps: builder(planted, params(30, max_items=caps[0], max_users=caps[1])) for caps in CAPS}
    base = lists[(None, None)]
    for caps in CAPS[1:-1]:
        assert not base.equals(lists[caps]), caps
    assert not lists[(5, None)].equals(lists[(5, 6)])
    assert not lists[(None, 6)].equals(lists[(5, 6)])


def test_the_statement_gives_the_builders_neighbours_on_synthetic_30000(synthetic):
    """Default parameters at depth 50 on the synthetic log (history = the train fold in event order):
    every list identical (measured: 911 of 911), counts equal, scores within SCORE_REL."""
    p = params(50)
    got = on_duckdb(synthetic, p)
    a = agreement(builder(synthetic, p), got, p["depth"])
    _report("synthetic:30000 DuckDB vs builder", a)
    assert got.height > 30_000
    assert (got["rank"] <= 50).all() and (got["item_id"] != got["neighbour_id"]).all()
    _assert_agrees(a, min_share=1.0)


# ----------------------------------------------------------------------------------------------
# Spark runs the same statement
# ----------------------------------------------------------------------------------------------


def _spark_checks(split: pl.DataFrame, p: dict, lake) -> tuple[Agreement, Agreement]:
    """(Spark against DuckDB, Spark against the builder)."""
    engine = SqlEngine(engine="spark", lake_dir=str(lake))
    started = time.perf_counter()
    got = on_spark(engine, split, p)
    print(f"on Spark: {got.height} rows in {time.perf_counter() - started:.1f} s")
    assert got.height > 0
    return agreement(on_duckdb(split, p), got, p["depth"], score_rel=1e-9), agreement(builder(split, p), got, p["depth"])


def test_spark_gives_duckdbs_and_the_builders_neighbours_on_the_planted_history(planted, tmp_path):
    """Spark local mode over the lake's day-partitions, with both caps biting, alpha=0.5 and the valid
    fold through the boolean parameter: DuckDB's lists (both sum in DOUBLE: scores to 1e-9) and the
    builder's."""
    pytest.importorskip("pyspark", reason="the spark extra (requirements-test.lock installs it)")
    vs_duckdb, vs_builder = _spark_checks(planted, params(5, True, 0.5, 5, 6), tmp_path / "lake")
    _report("planted Spark vs DuckDB", vs_duckdb)
    _report("planted Spark vs builder", vs_builder)
    _assert_agrees(vs_duckdb, score_rel=1e-9, min_share=1.0)
    _assert_agrees(vs_builder, min_share=0.9)


def test_spark_gives_duckdbs_and_the_builders_neighbours_on_synthetic_30000(synthetic, tmp_path):
    """synthetic:30000 at depth 50 with the defaults on Spark: DuckDB's lists and the builder's."""
    pytest.importorskip("pyspark", reason="the spark extra (requirements-test.lock installs it)")
    vs_duckdb, vs_builder = _spark_checks(synthetic, params(50), tmp_path / "lake")
    _report("synthetic:30000 Spark vs DuckDB", vs_duckdb)
    _report("synthetic:30000 Spark vs builder", vs_builder)
    _assert_agrees(vs_duckdb, score_rel=1e-9, min_share=1.0)
    _assert_agrees(vs_builder, min_share=1.0)
