"""The catalog shows what exists (assets/catalog.py): every DuckDB table the pipeline writes is an asset with
its table name, owners and layer tag; serving tables have a freshness policy; the steps that touch files or
the network retry; the alert webhook is an env var, never a URL in the UI."""

import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every table the pipeline writes (inventory of assets/ and resources/; assets/catalog.py says which step).
WRITTEN_TABLES = {
    "raw.interactions",
    "raw.items",
    "raw.users",
    "staging.interactions",
    "staging.split",
    "staging.split_params",
    "quality.quarantine",
    "quality.ingestion_log",
    "quality.check_results",
    "quality.alerts",
    "features.event_features",
    "features.outrank_scores",
    "features.quality_report",
    "features.redundant_pairs",
    "features.selected_features",
    "features.ranker_valid",
    "features.ranker_test",
    *(f"candidates.{stage}" for stage in ("pop", "itemcf", "swing", "als", "ease", "two_tower", "content", "tgh")),
    "candidates.pi2i_index",
    "candidates.pi2i_depth_curve",
    "candidates.pi2i",
    "candidates.pool",
    "candidates.pool_ranked",
    "candidates.lgbm_ranker",
    "candidates.sequence_ranker",
    "candidates.final",
    "models.registry",
    "models.final_stage",
    "eval.metrics",
    "eval.per_user",
    "eval.last_paired_test",
    "eval.user_sample",
    "eval.pooled_paired_test",
    "serving.recommendations",
}
SERVING_ASSETS = ("recommendations", "evaluation", "evaluation_summary")
RETRIED_ASSETS = ("raw_interactions", "items", "users", "recommendations", "evaluation", "evaluation_summary")
LAYERS = {"raw", "staging", "features", "candidates", "models", "serving", "quality", "evaluation"}

# schema.table names in the write calls of assets/ and resources/ (f-string parts such as {stage} become a wildcard);
# ``staged.add`` is assets.common.StagedTables, which writes a table block by block and publishes it
WRITE_CALL = re.compile(
    r"""(?:write_table|append|replace_window|staged\.add)\((?:con,\s*)?f?["']([a-z_]+\.[a-z_{}]+)["']|INSERT INTO ([a-z_]+\.[a-z_]+)""",
)


@pytest.fixture(scope="module")
def graph():
    from orchestration.definitions import defs

    return defs.resolve_asset_graph()


def _table_names(graph) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for key in graph.get_all_asset_keys():
        table = graph.get(key).metadata.get("dagster/table_name")
        if table is not None:
            tables.setdefault(table, []).append(key.to_user_string())
    return tables


def test_every_written_table_is_one_catalog_asset(graph):
    tables = _table_names(graph)
    assert WRITTEN_TABLES - set(tables) == set(), "tables the pipeline writes that are not in the catalog"
    assert {t: keys for t, keys in tables.items() if len(keys) > 1} == {}, "one asset per table"
    assert set(tables) - WRITTEN_TABLES == set(), "catalog tables missing from WRITTEN_TABLES (update the inventory)"


def test_every_table_in_a_write_call_is_in_the_catalog(graph):
    """Whatever write call a later change adds in assets/ or resources/, its table must be an asset."""
    tables = set(_table_names(graph))
    found = set()
    for path in [*(REPO_ROOT / "assets").glob("*.py"), *(REPO_ROOT / "resources").glob("*.py")]:
        for match in WRITE_CALL.finditer(path.read_text()):
            found.add(match.group(1) or match.group(2))
    assert {"raw.interactions", "quality.quarantine", "features.quality_report", "candidates.pool_ranked", "quality.alerts"} <= found
    for name in found:
        pattern = re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[a-z0-9_]+", re.escape(name)) + "$")
        assert any(pattern.match(t) for t in tables), f"{name} is written but no catalog asset has it as dagster/table_name"


def test_every_asset_has_owners_and_a_layer(graph):
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners and all(o.startswith("team:") for o in node.owners), key
        assert node.tags.get("layer") in LAYERS, key
    assert graph.get(dg.AssetKey("quality_quarantine")).owners == ["team:data-platform"]
    assert graph.get(dg.AssetKey("recommendations")).owners == ["team:recsys"]


def test_multi_asset_steps_keep_their_main_key_and_write_their_other_tables(graph):
    from orchestration.definitions import defs

    steps = {
        "raw_interactions": {"raw_interactions", "ingestion_log"},
        "split": {"split", "split_params"},
        "outrank_ranking": {"outrank_ranking", "feature_quality_report", "redundant_pairs"},
        "pi2i_index": {"pi2i_index", "pi2i_depth_curve"},
        "candidate_pool": {"candidate_pool", "candidates_pool_ranked"},
        "ranker_dataset": {"ranker_dataset", "ranker_test_dataset"},
        "evaluation": {"evaluation", "last_paired_test", "eval_user_sample"},
        "final_stage": {"final_stage", "final_stage_log"},
    }
    for main, keys in steps.items():
        assets_def = defs.get_assets_def(main)
        assert {k.to_user_string() for k in assets_def.keys} == keys
    shared = {"quality_quarantine", "quality_check_results", "quality_alerts", "eval_metrics", "models_registry"}
    assert {k.to_user_string() for k in graph.get_all_asset_keys() if not graph.get(k).is_executable} == shared


def test_serving_tables_have_a_freshness_policy_longer_than_the_weekly_retrain(graph):
    from datetime import timedelta

    for name in SERVING_ASSETS:
        policy = graph.get(dg.AssetKey(name)).freshness_policy
        assert policy is not None, name
        assert policy.fail_window.to_timedelta() > timedelta(days=7) >= policy.warn_window.to_timedelta()


def test_steps_touching_files_or_the_network_retry():
    from orchestration.definitions import defs

    for name in RETRIED_ASSETS:
        policy = defs.get_assets_def(name).op.retry_policy
        assert policy is not None and policy.max_retries >= 1 and policy.backoff == dg.Backoff.EXPONENTIAL, name


def test_table_metadata_reads_row_count_and_schema_from_duckdb(tmp_path):
    from assets.metadata import table_metadata
    from resources.warehouse import Warehouse

    warehouse = Warehouse(data_dir=str(tmp_path))
    warehouse.write_table("candidates.demo", pl.DataFrame({"fold": ["valid", "test", "test"], "user_id": [1, 2, 3]}))
    meta = table_metadata(warehouse, "candidates.demo", "fold = $fold", {"fold": "test"})
    assert meta["dagster/table_name"] == "candidates.demo"
    assert (meta["dagster/row_count"], meta["dagster/partition_row_count"]) == (3, 2)
    assert [(c.name, c.type) for c in meta["dagster/column_schema"].columns] == [("fold", "VARCHAR"), ("user_id", "BIGINT")]
    with pytest.raises(ValueError):
        table_metadata(warehouse, "candidates.demo; DROP TABLE x")


def test_a_subset_of_a_multi_asset_step_records_every_table_it_wrote():
    """Selecting one key of a multi-asset step still records the step's other tables (assets.catalog.results)."""
    from assets.catalog import results

    @dg.multi_asset(specs=[dg.AssetSpec("main_table"), dg.AssetSpec("side_table")], can_subset=True)
    def step(context: dg.AssetExecutionContext):
        yield from results(
            context,
            dg.MaterializeResult(asset_key="main_table", metadata={"n": 1}),
            dg.MaterializeResult(asset_key="side_table", metadata={"n": 2}),
        )

    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([step], selection=["main_table"], instance=instance).success
    side = instance.get_latest_materialization_event(dg.AssetKey("side_table"))
    assert side is not None and side.asset_materialization.metadata["n"].value == 2


def test_alert_webhook_is_an_env_var_and_optional(monkeypatch):
    from orchestration.definitions import build_resources
    from resources.alerts import AlertSink

    seen = {}

    @dg.asset
    def probe(alerts: AlertSink):
        seen["url"] = alerts.webhook_url

    monkeypatch.setenv("RECDAG_ALERT_WEBHOOK", "https://hooks.example/secret")
    sink = build_resources()["alerts"]
    assert isinstance(sink.webhook_url, dg.EnvVar) and sink.webhook_url.env_var_name == "RECDAG_ALERT_WEBHOOK"
    assert dg.materialize([probe], resources={"alerts": sink}).success
    assert seen["url"] == "https://hooks.example/secret"

    monkeypatch.delenv("RECDAG_ALERT_WEBHOOK")
    sink = build_resources()["alerts"]
    assert sink.webhook_url is None
    assert dg.materialize([probe], resources={"alerts": sink}).success
    assert seen["url"] is None
