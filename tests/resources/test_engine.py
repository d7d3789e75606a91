"""The engine switch: one SQL definition on DuckDB and on Spark (local mode), exchanging Parquet
day-partitions through the lake (resources/engine.py, resources/lake.py). The whole DAG runs here once
per engine on the test-wide synthetic log: the DuckDB run is also the whole-pipeline test of the
default engine (every stage evaluated), so the suite pays for it once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsys.rankers.features import HISTORY_COLUMNS
from resources.engine import SqlEngine, spark_config, to_spark_sql
from resources.lake import Lake
from resources.warehouse import load_sql

pytestmark = pytest.mark.heavy(520)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

pytest.importorskip("pyspark", reason="the spark extra (requirements-test.lock installs it)")


def test_transpiled_sql_reads_views_named_after_the_tables_and_keeps_its_parameters():
    text, tables = to_spark_sql(load_sql("staging/interactions"))
    assert tables == ["raw.interactions"]
    assert "raw__interactions" in text and "raw.interactions" not in text
    assert ":start" in text and ":end" in text and "$start" not in text
    assert "JOIN dup" in text  # CTE names are not lake tables: left as they are


def test_an_engine_name_outside_the_list_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("RECDAG_ENGINE", "polars")
    with pytest.raises(ValueError, match="RECDAG_ENGINE='polars': expected one of duckdb, spark"):
        _ = SqlEngine().kind
    with pytest.raises(ValueError, match="SqlEngine.engine='flink'"):
        _ = SqlEngine(engine="flink").kind


def test_spark_connect_replaces_the_master_and_overrides_come_last():
    conf = spark_config("local[2]", "sc://spark.example:15002", {"spark.sql.shuffle.partitions": "64"})
    assert conf["spark.remote"] == "sc://spark.example:15002" and "spark.master" not in conf
    assert conf["spark.sql.shuffle.partitions"] == "64" and conf["spark.sql.session.timeZone"] == "UTC"
    assert spark_config("spark://m:7077", None, {})["spark.master"] == "spark://m:7077"


def _frame(days: list[str], rows_per_day: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": list(range(rows_per_day * len(days))),
            "event_date": [dt.date.fromisoformat(d) for d in days for _ in range(rows_per_day)],
        }
    )


def test_lake_days_are_replaced_whole_and_stray_rows_are_refused(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_days("raw.interactions", _frame(["2020-01-01", "2020-01-02"]), ["2020-01-01", "2020-01-02"])
    assert len(lake.day_files("raw.interactions", ["2020-01-01", "2020-01-02"])) == 2
    # rewriting 01-02 with no rows leaves that day empty, and 01-01 untouched
    lake.write_days("raw.interactions", _frame([]), ["2020-01-02"])
    assert lake.day_files("raw.interactions", ["2020-01-02"]) == []
    assert len(lake.day_files("raw.interactions", ["2020-01-01"])) == 1
    with pytest.raises(ValueError, match="1 rows dated outside the days written, e.g. 2020-01-03"):
        lake.write_days("raw.interactions", _frame(["2020-01-03"], rows_per_day=1), ["2020-01-01"])
    with pytest.raises(ValueError, match="expected schema.table"):
        lake.table_path("interactions")
    # an object-store root is refused by name on the local side, never read as "no files" (which would empty days)
    with pytest.raises(ValueError, match="lake s3a://bucket/lake: listing the files of staging.interactions needs a filesystem path"):
        Lake("s3a://bucket/lake").day_files("staging.interactions", ["2020-01-01"])


CONNECT_CLIENT = """
import numpy as np, polars as pl, sys
from recsys.metrics import DEFAULT_KS, METRICS, per_user_metrics
from resources.engine import SqlEngine
engine = SqlEngine(engine="spark", spark_remote="local[2]", lake_dir=sys.argv[1])
rng = np.random.default_rng(0)
recs = pl.DataFrame({"user_id": np.repeat(np.arange(50), 20), "rank": np.tile(np.arange(1, 21), 50),
                     "item_id": np.concatenate([rng.permutation(100)[:20] for _ in range(50)])})
truth = pl.DataFrame({"user_id": rng.integers(0, 50, 300), "item_id": rng.integers(0, 100, 300)})
got = engine.per_user_metrics(recs, truth, DEFAULT_KS, METRICS)
want = per_user_metrics(recs, truth, DEFAULT_KS, METRICS)
print(type(engine.spark).__module__, float((got["value"] - want["value"]).abs().max()))
"""


def test_spark_connect_runs_the_same_statement(tmp_path):
    """RECDAG_SPARK_REMOTE: the engine through a Spark Connect client (pyspark starts a local Connect server
    for ``local[2]``; a cluster's is ``sc://host:15002``), in its own process: one JVM cannot hold both kinds."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CONNECT_CLIENT, str(tmp_path / "lake")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    module, diff = done.stdout.split()[-2:]
    assert module == "pyspark.sql.connect.session" and float(diff) < 1e-12


PLANTED_DUPLICATES = """
SELECT i % 50 AS user_id, i % 7 AS item_id, CASE WHEN i % 3 = 0 THEN 'view' ELSE 'buy' END AS event_type,
       i::DOUBLE AS value, TIMESTAMP '2017-11-25' + to_minutes(i % 40) AS ts, DATE '2017-11-25' + (i % 2)::INT AS event_date,
       NULL::BIGINT AS session_id, 'taobao' AS source, TIMESTAMP '2020-01-01' + to_seconds(i % 4) AS ingested_at,
       CASE WHEN i % 11 = 0 THEN NULL ELSE i END::BIGINT AS seq
FROM range(5000) AS t(i)
"""


def test_the_dedupe_statement_keeps_the_same_rows_on_spark_as_on_duckdb(tmp_path):
    """sql/staging/interactions.sql over planted duplicates (repeated keys, ingestion times, null seq)."""
    con = duckdb.connect()
    raw = con.execute(PLANTED_DUPLICATES).pl()
    days = ["2017-11-25", "2017-11-26"]
    engine = SqlEngine(engine="spark", lake_dir=str(tmp_path / "lake"))
    engine.lake.write_days("raw.interactions", raw, days)
    params = {"start": dt.date(2017, 11, 25), "end": dt.date(2017, 11, 26)}
    engine.spark_replace_days("staging/interactions", params, "staging.interactions", days)

    con.register("raw_frame", raw.to_arrow())
    con.execute("CREATE SCHEMA raw; CREATE TABLE raw.interactions AS SELECT * FROM raw_frame")
    on_duckdb = con.execute(f"SELECT * FROM ({load_sql('staging/interactions')}) ORDER BY ALL", params).fetchall()
    files = engine.lake.day_files("staging.interactions", days)
    on_spark = con.execute(
        f"SELECT * FROM ({load_sql('staging/interactions_from_lake')}) ORDER BY ALL", {**params, "files": files}
    ).fetchall()
    assert len(on_duckdb) < raw.height and on_spark == on_duckdb


def test_a_lake_table_that_was_never_written_names_its_path(tmp_path):
    engine = SqlEngine(engine="spark", lake_dir=str(tmp_path / "empty-lake"))
    with pytest.raises(FileNotFoundError, match=r"lake table raw.interactions: no Parquet day-partitions at .*empty-lake/raw/interactions"):
        engine.spark_query("staging/interactions", {"start": dt.date(2020, 1, 1), "end": dt.date(2020, 1, 2)})


ENGINES = ("duckdb", "spark")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> dict:
    """The ingestion group run under each engine on the synthetic log, each in its own data dir and lake."""
    from tests.assets.dagster_support import ingest_every_day, local_resources

    out = {}
    for kind in ENGINES:
        data = tmp_path_factory.mktemp(kind)
        resources = local_resources(data, "synthetic:30000", engine=SqlEngine(engine=kind, lake_dir=str(data / "lake")))
        with dg.instance_for_test() as instance:
            ingest_every_day(resources, instance)
        out[kind] = (data, resources)
    return out


def _rows(data: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_ingesting_on_spark_gives_duckdbs_clean_interactions(ingested):
    """Identical staging.interactions and duplicate counts; only the Spark run writes the lake
    (planted duplicates: the test above)."""
    tables = {kind: _rows(data, "SELECT * FROM staging.interactions ORDER BY ALL") for kind, (data, _) in ingested.items()}
    removed = {
        kind: _rows(data, "SELECT (SELECT count(*) FROM raw.interactions) - (SELECT count(*) FROM staging.interactions)")
        for kind, (data, _) in ingested.items()
    }
    assert len(tables["duckdb"]) > 20_000 and tables["spark"] == tables["duckdb"]
    assert removed["spark"] == removed["duckdb"]
    assert (ingested["spark"][0] / "lake" / "staging" / "interactions").is_dir()
    assert not (ingested["duckdb"][0] / "lake").exists()


@pytest.mark.parametrize("protocol", ["temporal", "temporal_quantile", "leave_last_out"])
def test_the_split_statement_gives_the_in_memory_split_on_both_engines(ingested, protocol):
    """sql/staging/split_<protocol>.sql on DuckDB and on Spark: the same train / valid / test rows, in the
    same order, and the same params as recsys' in-memory split of the same interactions."""
    from assets.partitions import latest_cutoff
    from assets.split import SplitConfig, make_split, sql_split

    cutoff = latest_cutoff()
    data, resources = ingested["duckdb"]
    want = make_split(protocol, resources["warehouse"].query_file("staging/split_input"), SplitConfig(), cutoff)
    assert min(want.train.height, want.valid.height, want.test.height) > 0
    for kind, (_, res) in ingested.items():
        got = sql_split(protocol, SplitConfig(), cutoff, res["warehouse"], res["engine"])
        for fold in ("train", "valid", "test"):
            assert getattr(got, fold).equals(getattr(want, fold)), f"{kind} {protocol} {fold}"
        assert got.params == want.params, kind


def test_a_quantile_cut_after_everything_is_a_null_parameter_on_both_engines(ingested):
    """temporal_quantile with test_frac 0: the test cut lies after every event (a null $t2), so test is
    empty and valid runs to the end, as in recsys' in-memory split."""
    from assets.split import SplitConfig, make_split, sql_split

    config = SplitConfig(valid_frac=0.2, test_frac=0.0)
    want = make_split("temporal_quantile", ingested["duckdb"][1]["warehouse"].query_file("staging/split_input"), config)
    assert want.test.height == 0 and want.valid.height > 0
    for kind, (_, res) in ingested.items():
        got = sql_split("temporal_quantile", config, None, res["warehouse"], res["engine"])
        assert all(getattr(got, f).equals(getattr(want, f)) for f in ("train", "valid", "test")) and got.params == want.params, kind


def test_per_user_metrics_statement_equals_recsys_on_both_engines(tmp_path):
    """sql/eval/per_user_metrics.sql gives recsys.metrics.per_user_metrics' rows (same order) to float rounding:
    users without a list, truth outside every list, duplicate truth rows, lists shorter than K."""
    import numpy as np

    from recsys.metrics import DEFAULT_KS, METRICS, per_user_metrics

    rng = np.random.default_rng(0)
    n_users, n_items = 300, 200
    depth = rng.integers(1, 101, n_users)
    recs = pl.DataFrame(
        {
            "user_id": np.repeat(np.arange(n_users), depth),
            "item_id": np.concatenate([rng.permutation(n_items)[:d] for d in depth]),
            "rank": np.concatenate([np.arange(1, d + 1) * 3 for d in depth]),  # gaps in rank are harmless
        }
    ).filter(pl.col("user_id") % 7 != 3)
    truth = pl.DataFrame({"user_id": rng.integers(0, n_users + 20, 3000), "item_id": rng.integers(0, n_items, 3000)})
    want = per_user_metrics(recs, truth, DEFAULT_KS, METRICS)
    for kind in ENGINES:
        got = SqlEngine(engine=kind, lake_dir=str(tmp_path / "lake")).per_user_metrics(recs, truth, DEFAULT_KS, METRICS)
        assert got.select("user_id", "metric", "k").equals(want.select("user_id", "metric", "k")), kind
        assert float((got["value"] - want["value"]).abs().max()) < 1e-12, kind
    with pytest.raises(ValueError, match="ranks must be unique within a user's list"):
        SqlEngine(engine="duckdb").per_user_metrics(recs.with_columns(pl.lit(1).alias("rank")), truth, DEFAULT_KS, METRICS)


@pytest.fixture(scope="module")
def pipeline(ingested):
    """``pipeline(engine)``: the DAG downstream of `interactions` (dagster_support.FAST_OPS) on that engine's
    ingested log, run once per module on first use: (data dir, resources, instance, result)."""
    from assets.partitions import latest_cutoff
    from orchestration.definitions import all_assets, all_checks
    from tests.assets.dagster_support import FAST_OPS

    runs = {}

    def run(kind: str) -> tuple:
        if kind not in runs:
            data, resources = ingested[kind]
            instance = dg.DagsterInstance.ephemeral()
            result = dg.materialize(
                [*all_assets, *all_checks],
                selection=dg.AssetSelection.assets("interactions").downstream(include_self=False),
                resources=resources,
                instance=instance,
                partition_key=latest_cutoff(),
                run_config={"ops": FAST_OPS},
            )
            assert result.success, kind
            runs[kind] = (data, resources, instance, result)
        return runs[kind]

    return run


def test_the_whole_pipeline_on_duckdb_evaluates_every_stage(pipeline):
    """The default engine: every stage lands in eval.metrics with intervals, the rankers and PI2I in the
    registry, the lists served and exported, the HTML report and the evaluation's metadata tables; the
    pool rebuilt in small user blocks equals the one built in the default block."""
    from assets.partitions import latest_cutoff
    from orchestration.definitions import all_assets, all_checks

    data, resources, instance, downstream = pipeline("duckdb")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM eval.metrics WHERE fold = 'test'").fetchall()}
        n_recs = con.execute("SELECT count(*) FROM serving.recommendations").fetchone()[0]
        selected = con.execute("SELECT count(*) FROM features.selected_features").fetchone()[0]
        ci_ok = con.execute("SELECT bool_and(ci_low <= value AND value <= ci_high) FROM eval.metrics WHERE ci_low IS NOT NULL").fetchone()[
            0
        ]
        registry = {r[0] for r in con.execute("SELECT name FROM models.registry").fetchall()}
    expected = {
        *("pop", "itemcf", "swing", "als", "ease", "two_tower", "content", "tgh", "pi2i_index", "pi2i", "pool"),
        *("lgbm_ranker", "sequence_ranker"),
    }
    assert expected <= stages
    assert n_recs > 0 and selected > 0 and ci_ok
    assert {"lgbm_ranker", "sequence_ranker", "pi2i_valid", "pi2i_test"} <= registry
    assert (data / "exports" / "recommendations.parquet").exists()
    # the HTML report, and the headline as a Dagster table (shown inline on the asset page) with its schema
    report = data / "exports" / "report.html"
    assert report.exists() and report.stat().st_size > 10_000
    html = report.read_text()
    assert "lgbm_ranker" in html and html.count("<img") >= 3 and "Holm" in html
    # the evaluation step also writes eval.last_paired_test (asset last_paired_test, assets/catalog.py)
    [materialization] = [m for m in downstream.asset_materializations_for_node("evaluation") if m.asset_key == dg.AssetKey("evaluation")]
    meta = materialization.metadata
    assert meta["dagster/table_name"].value == "eval.per_user" and meta["dagster/partition_row_count"].value > 0
    assert meta["report"].path == str(report)
    table = meta["headline"]
    columns = {c.name: c.type for c in table.schema.columns}
    assert columns["stage"] == "string" and columns["users"] == "int"
    assert all(columns[c] == "float" for c in ("ndcg@10", "ndcg 95% low", "ndcg 95% high", "recall@10", "hit_rate@10"))
    assert expected <= {r.data["stage"] for r in table.records}
    assert all(r.data["ndcg 95% low"] <= r.data["ndcg@10"] <= r.data["ndcg 95% high"] for r in table.records)
    paired = meta["paired_tests_holm"]  # the ranker chosen on valid against every other stage, Holm-adjusted
    assert {c.name: c.type for c in paired.schema.columns}["decided_95"] == "bool"
    assert expected - {r.data["stage"] for r in paired.records} <= {r.data["versus"] for r in paired.records}
    assert all(r.data["p_value"] <= r.data["p_holm"] <= 1 and r.data["decided_95"] == (r.data["p_holm"] < 0.05) for r in paired.records)

    # candidate_pool builds per block of users: rebuilt in blocks of 97 users (the synthetic log has a few
    # hundred per fold, so several blocks each; every block queries every channel, so 7 cost a minute),
    # both of its tables are the ones the default block wrote
    def pool_tables() -> dict:
        return {t: _rows(data, f"SELECT * FROM candidates.{t} ORDER BY ALL") for t in ("pool", "pool_ranked")}

    whole = pool_tables()
    assert len(whole["pool"]) > 1000
    rebuilt = dg.materialize(
        [*all_assets, *all_checks],
        selection=["candidate_pool"],
        resources=resources,
        instance=instance,
        partition_key=latest_cutoff(),
        run_config={"ops": {"candidate_pool": {"config": {"block_users": 97}}}},
    )
    assert rebuilt.success and pool_tables() == whole


def test_the_whole_pipeline_on_spark_gives_duckdbs_metrics(ingested, pipeline):
    """Everything downstream of the clean interactions, under each engine (the split, OutRank's input rows,
    item CF's and Swing's indexes, the rankers' history features and the per-user accuracy on Spark under
    spark): the same staging.split, ranker frames, final lists and eval.metrics (values and bootstrap
    intervals) to float rounding."""
    index_on = {}
    for kind in ENGINES:
        result = pipeline(kind)[-1]
        for stage in ("itemcf", "swing"):
            [m] = result.asset_materializations_for_node(f"candidates_{stage}")
            index_on[kind, stage] = m.metadata.get("item_index_built_on")
        [m] = result.asset_materializations_for_node("event_features")
        assert m.metadata["built_on"].value == f"{kind} (sql/features/outrank_rows.sql)"
        built = {m.asset_key.path[-1]: m for m in result.asset_materializations_for_node("ranker_dataset")}
        assert built["ranker_dataset"].metadata["built_on"].value == f"{kind} (sql/features/ranker_history.sql)"
    # the item indexes: the C++ builder under DuckDB, the SQL statements on Spark under spark
    assert index_on["duckdb", "itemcf"] is None and index_on["duckdb", "swing"] is None
    assert index_on["spark", "itemcf"].value == "spark (sql/index/cooc_neighbours.sql)"
    assert index_on["spark", "swing"].value == "spark (sql/index/swing_neighbours.sql)"
    # eval.metrics holds several rows per (stage, fold, cohort, metric, k): the funnel's depths, beyond-accuracy rows;
    # rows that differ only in the last bits of their value must not swap places, hence the rounding in the order
    order = "stage, fold, cohort, metric, k, n_users, round(value, 9), round(ci_low, 9), round(ci_high, 9)"
    metrics = {
        kind: _rows(data, f"SELECT stage, fold, cohort, metric, k, n_users, value, ci_low, ci_high FROM eval.metrics ORDER BY {order}")
        for kind, (data, _) in ingested.items()
    }
    assert len(metrics["duckdb"]) > 1000 and len(metrics["spark"]) == len(metrics["duckdb"])
    for ours, theirs in zip(metrics["spark"], metrics["duckdb"], strict=True):
        assert ours[:6] == theirs[:6]
        same = [(a is None) == (b is None) and (a is None or abs(a - b) < 1e-9) for a, b in zip(ours[6:], theirs[6:], strict=True)]
        assert all(same), (ours, theirs)
    # the rankers' frames: the history features and labels on each engine, bit for bit
    for table in ("features.ranker_valid", "features.ranker_test"):
        frames = {}
        for kind, (data, _) in ingested.items():
            with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
                frames[kind] = con.execute(f"SELECT * FROM {table} ORDER BY user_id, item_id").pl()
        assert frames["duckdb"].height > 1000, table
        # the history features bit for bit. Not the channel features: item CF's and Swing's raw scores differ in
        # their last bits between the C++ builder (float32 sums) and the statements (DOUBLE), and a per-user
        # min-max of close scores magnifies that; their lists and the final lists are the same (below)
        exact = ["user_id", "item_id", *HISTORY_COLUMNS, *(["label"] if "label" in frames["duckdb"].columns else [])]
        assert_frame_equal(frames["spark"].select(exact), frames["duckdb"].select(exact), check_exact=True)
    lists = {kind: _rows(data, "SELECT user_id, item_id, rank FROM candidates.final ORDER BY ALL") for kind, (data, _) in ingested.items()}
    assert lists["spark"] == lists["duckdb"] and len(lists["duckdb"]) > 100
    # the split asset: the same staging.split and params; under spark it went through the lake
    split = {kind: _rows(data, "SELECT * FROM staging.split ORDER BY ALL") for kind, (data, _) in ingested.items()}
    params = {kind: _rows(data, "SELECT CAST(params AS VARCHAR) FROM staging.split_params") for kind, (data, _) in ingested.items()}
    assert len(split["duckdb"]) > 20_000 and split["spark"] == split["duckdb"] and params["spark"] == params["duckdb"]
    assert (ingested["spark"][0] / "lake" / "staging" / "split").is_dir()
