"""The promotion gate: like-with-like comparison, a recorded verdict, and evaluation never blocked.

Pure verdict logic (recsys.promotion), the model store's keyed lookup and promotion on a real DuckDB
file, and the DAG in process: a ranker that fails its gate is still evaluated, is recorded as
failed, and is neither served nor promoted.
"""

import json
import math

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.partitions import daily_partitions, latest_cutoff
from orchestration.definitions import all_assets, all_checks, build_resources
from orchestration.tags import partition_range_tags
from recsys.promotion import (
    NO_BASELINE,
    comparison_key,
    cutoff_rule,
    gate_measures,
    gate_verdict,
    holdout_ndcg,
    no_ranker_passed_message,
    served_from_promoted,
    serving_choice,
)
from resources.datasets import DatasetSource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse

pytestmark = pytest.mark.heavy(70)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

TEMPORAL = {"protocol": "temporal", "window_days": 3, "cutoff": "2017-12-01", "t_valid_start": "2017-11-28 00:00:00", "n_train_rows": 10}

# --- pure ------------------------------------------------------------------------------------


def test_cutoff_rule_names_how_the_cuts_were_made():
    assert cutoff_rule(TEMPORAL) == "temporal:window_days=3"
    assert cutoff_rule({"protocol": "leave_last_out", "min_interactions": 3}) == "leave_last_out:min=3"
    assert cutoff_rule({"protocol": "files", "source": "/data/ml-1m"}) == "files:/data/ml-1m"
    assert cutoff_rule({"protocol_spec": "custom"}) == "custom"
    # the cut timestamps move with the data; the rule does not
    assert cutoff_rule({**TEMPORAL, "t_valid_start": "2018-01-01"}) == cutoff_rule(TEMPORAL)
    assert comparison_key("synthetic:30000", TEMPORAL) == ("synthetic:30000", "temporal", "temporal:window_days=3")
    assert comparison_key("ml", {**TEMPORAL, "window_days": 7}) != comparison_key("ml", TEMPORAL)


def test_gate_verdict():
    passed, details = gate_verdict(0.30, None, 0.1)
    assert passed and NO_BASELINE in details["reason"] and details["floor"] is None
    passed, details = gate_verdict(0.30, 0.33, 0.1)  # floor 0.297
    assert passed and details["floor"] == pytest.approx(0.297) and details["baseline_ndcg10"] == 0.33
    passed, details = gate_verdict(0.29, 0.33, 0.1)
    assert not passed and "below the floor 0.2970" in details["reason"]
    assert gate_verdict(0.33, 0.33, 0.0)[0] and not gate_verdict(0.33, 0.33, -0.01)[0]  # negative drop: must improve
    assert not gate_verdict(math.nan, None, 0.1)[0]
    json.dumps(gate_verdict(math.nan, 0.2, 0.1)[1])  # details are JSON


def test_gate_verdict_allows_for_noise_only_when_both_errors_are_known():
    # floor 0.297; allowance 1.645 * sqrt(0.03^2 + (0.9 * 0.04)^2) = 0.0771
    passed, details = gate_verdict(0.25, 0.33, 0.1, se=0.03, baseline_se=0.04)
    assert passed and details["noise_allowance"] == pytest.approx(1.645 * math.hypot(0.03, 0.036))
    assert "within the noise allowance 0.0771" in details["reason"]
    # beyond the allowance: a regression the data shows
    passed, details = gate_verdict(0.21, 0.33, 0.1, se=0.03, baseline_se=0.04)
    assert not passed and "beyond the noise allowance" in details["reason"]
    # at the boundary the ranker passes; just past it, it fails
    edge = 0.297 - 1.645 * math.hypot(0.03, 0.036)
    assert gate_verdict(edge + 1e-9, 0.33, 0.1, se=0.03, baseline_se=0.04)[0]
    assert not gate_verdict(edge - 1e-6, 0.33, 0.1, se=0.03, baseline_se=0.04)[0]
    # noise_z 0, or a missing / non-finite error: the point rule
    assert not gate_verdict(0.25, 0.33, 0.1, se=0.03, baseline_se=0.04, noise_z=0)[0]
    assert not gate_verdict(0.25, 0.33, 0.1, se=0.03, baseline_se=None)[0]
    assert not gate_verdict(0.25, 0.33, 0.1, se=math.nan, baseline_se=0.04)[0]
    assert gate_verdict(0.25, 0.33, 0.1, se=0.03)[1]["noise_allowance"] == 0.0
    json.dumps(gate_verdict(0.25, 0.33, 0.1, se=0.03, baseline_se=0.04)[1])


def test_holdout_ndcg_per_user_mean_and_standard_error():
    # user 1: the positive ranked first (1.0); user 2: the positive second of two (1 / log2(3)); user 3: no positive
    holdout = pl.DataFrame(
        {
            "user_id": [2, 1, 1, 2, 3],
            "item_id": [5, 1, 2, 6, 7],
            "label": [1, 1, 0, 0, 0],
            "score": [0.1, 0.9, 0.2, 0.8, 0.5],
        }
    )
    got = holdout_ndcg(holdout)
    per_user = [1.0, 1.0 / math.log2(3.0)]
    assert got["gate_users"] == 2 and got["gate_ndcg10"] == pytest.approx(sum(per_user) / 2)
    assert got["gate_ndcg10_se"] == pytest.approx(abs(per_user[0] - per_user[1]) / 2)  # sd (ddof 1) / sqrt(2)
    one = holdout_ndcg(holdout.filter(pl.col("user_id") == 1))
    assert one == {"gate_ndcg10": 1.0, "gate_users": 1}  # no spread from one user: no standard error
    assert holdout_ndcg(None) is None and holdout_ndcg(holdout.drop("label")) is None
    assert holdout_ndcg(holdout.filter(pl.col("user_id") == 3)) is None


def test_gate_measures_compare_like_with_like():
    new = {"valid_ndcg10": 0.26, "gate_ndcg10": 0.30, "gate_ndcg10_se": 0.03, "gate_users": 80}
    both = gate_measures(new, {"valid_ndcg10": 0.39, "gate_ndcg10": 0.33, "gate_ndcg10_se": 0.04})
    assert (both["ndcg"], both["se"], both["baseline"], both["baseline_se"]) == (0.30, 0.03, 0.33, 0.04)
    assert "80 labelled valid users" in both["measure"]
    assert gate_measures(new, None)["baseline"] is None and gate_measures(new, None)["ndcg"] == 0.30
    # a promoted model stored before the holdout measure: both early-stopping scores, no allowance
    legacy = gate_measures(new, {"valid_ndcg10": 0.39})
    assert (legacy["ndcg"], legacy["se"], legacy["baseline"], legacy["baseline_se"]) == (0.26, None, 0.39, None)
    assert legacy["measure"] == "early-stopping valid NDCG@10"
    # a ranker without the holdout measure is compared by valid_ndcg10 too
    assert gate_measures({"valid_ndcg10": 0.26}, {"valid_ndcg10": 0.39, "gate_ndcg10": 0.33})["baseline"] == 0.39


def test_serving_choice_only_among_passed():
    rankers = {
        "lgbm_ranker": {"gate_passed": False, "valid_ndcg10": 0.5, "gate_details": {"floor": 0.6}},
        "sequence_ranker": {"gate_passed": True, "valid_ndcg10": 0.2, "gate_details": {"floor": None}},
        "legacy": {"gate_passed": None, "valid_ndcg10": 0.9},
    }
    assert serving_choice(rankers) == "sequence_ranker"
    assert serving_choice({"lgbm_ranker": rankers["lgbm_ranker"]}) is None
    message = no_ranker_passed_message({"lgbm_ranker": rankers["lgbm_ranker"]})
    assert message == "lgbm_ranker: valid NDCG@10 0.5000, floor 0.6000"


# --- model store on a real warehouse ---------------------------------------------------------


def _save(store, wh, name, payload, ndcg, key, run_id="r", promoted=False, metrics=None, **gate):
    dataset, protocol, rule = key
    scores = {"valid_ndcg10": ndcg, **(metrics or {})}
    return store.save(wh, name, payload, {}, scores, run_id, promoted, dataset=dataset, protocol=protocol, cutoff_rule=rule, **gate)


def test_served_blends_count_as_promoted_when_every_ranker_they_fuse_is():
    promoted = {("lgbm_ranker", "a1"), ("sequence_ranker", "b2")}
    assert served_from_promoted(("lgbm_ranker", "a1"), promoted)
    assert not served_from_promoted(("lgbm_ranker", "a0"), promoted)  # an older, no longer promoted version
    # a backtest served the rankers' blend at one cut-off; at the next none passed: the blend's lists are kept
    assert served_from_promoted(("blend", "a1+b2"), promoted)
    assert served_from_promoted(("blend+ease", "a1+b2"), promoted)
    assert not served_from_promoted(("blend", "a1+b9"), promoted)  # one fused ranker was replaced since
    # a channel or the pool served by the guard came from no promoted model
    assert not served_from_promoted(("ease", "channel@1234abcd"), promoted)


def test_model_store_compares_like_with_like(tmp_path):
    wh, store = Warehouse(data_dir=str(tmp_path)), ModelStore(data_dir=str(tmp_path))
    key = comparison_key("synthetic:30000", TEMPORAL)
    other_dataset = comparison_key("movielens-100k", TEMPORAL)
    other_protocol = comparison_key("synthetic:30000", {"protocol": "leave_last_out", "min_interactions": 3})
    other_cuts = comparison_key("synthetic:30000", {**TEMPORAL, "window_days": 7})
    mine = _save(store, wh, "lgbm_ranker", b"a", 0.30, key, promoted=True)
    for i, k in enumerate([other_dataset, other_protocol, other_cuts]):  # promoted later, not comparable
        _save(store, wh, "lgbm_ranker", bytes([i]), 0.9, k, promoted=True)
    _save(store, wh, "sequence_ranker", b"s", 0.95, key, promoted=True)  # another name
    _save(store, wh, "lgbm_ranker", b"new", 0.1, key, gate_passed=False, gate_details={"floor": 0.27})  # newest, not promoted

    found = store.latest(wh, "lgbm_ranker", promoted_only=True, dataset=key[0], protocol=key[1], cutoff_rule=key[2])
    assert found["version"] == mine["version"] and found["metrics"]["valid_ndcg10"] == 0.30
    newest = store.latest(wh, "lgbm_ranker", dataset=key[0], protocol=key[1], cutoff_rule=key[2])
    assert newest["gate_passed"] is False and newest["gate_details"] == {"floor": 0.27} and newest["promoted"] is False
    assert store.latest(wh, "lgbm_ranker", promoted_only=True, dataset="nope") is None
    assert store.latest(wh, "pi2i_test") is None

    # promotion is per comparison key: the other datasets' and protocols' promoted models stay promoted
    store.promote(wh, "lgbm_ranker", newest["version"], run_id="r")
    promoted = wh.query("SELECT dataset, protocol, cutoff_rule, version FROM models.registry WHERE name = 'lgbm_ranker' AND promoted")
    assert promoted.height == 4
    assert promoted.filter(pl.col("cutoff_rule") == key[2], pl.col("dataset") == key[0])["version"].to_list() == [newest["version"]]
    with pytest.raises(KeyError, match="lgbm_ranker@missing"):
        store.promote(wh, "lgbm_ranker", "missing")


def test_registry_columns_are_added_to_an_old_warehouse(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA models")
        con.execute(
            "CREATE TABLE models.registry (name VARCHAR, version VARCHAR, path VARCHAR, params JSON, metrics JSON, "
            "run_id VARCHAR, trained_at TIMESTAMP, promoted BOOLEAN DEFAULT FALSE)"
        )
        con.execute("INSERT INTO models.registry VALUES ('lgbm_ranker', 'old', 'p', '{}', '{\"valid_ndcg10\": 0.99}', 'r0', now(), TRUE)")
    wh, store = Warehouse(data_dir=str(tmp_path)), ModelStore(data_dir=str(tmp_path))
    columns = wh.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'registry'")["column_name"].to_list()
    assert {"dataset", "protocol", "cutoff_rule", "gate_passed", "gate_details"} <= set(columns)
    key = comparison_key("synthetic:30000", TEMPORAL)
    # a row from before the keys is comparable to nothing, but still the latest of its name
    assert store.latest(wh, "lgbm_ranker", promoted_only=True, dataset=key[0], protocol=key[1], cutoff_rule=key[2]) is None
    assert store.latest(wh, "lgbm_ranker", promoted_only=True)["version"] == "old"
    _save(store, wh, "lgbm_ranker", b"x", 0.2, key, gate_passed=True, gate_details={})
    assert store.latest(wh, "lgbm_ranker")["dataset"] == key[0]


# --- the DAG in process ----------------------------------------------------------------------

DATASET = "synthetic:30000"
FAST = {
    "candidates_two_tower": {"config": {"params": {"epochs": 1}}},
    "pi2i_scorer": {"config": {"params": {"epochs": 1, "depth": 100}}},
    "lgbm_ranker": {"config": {"params_grid": [{}]}},
    "evaluation": {"config": {"n_boot": 20}},
}
PREVIOUS_RUN = "previous-run"


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """The DAG downstream of `interactions` (sequence_ranker left out to stay fast) after a promoted
    comparable lgbm_ranker with an unreachable valid NDCG@10 was registered and its lists served."""
    data_dir = tmp_path_factory.mktemp("gate")
    resources = {
        **build_resources(),
        "warehouse": Warehouse(data_dir=str(data_dir)),
        "source": DatasetSource(dataset=DATASET, data_dir=str(data_dir)),
        "model_store": ModelStore(data_dir=str(data_dir)),
    }
    wh, store = resources["warehouse"], resources["model_store"]
    keys = daily_partitions.get_partition_keys()
    instance = dg.DagsterInstance.ephemeral()
    ingest = dg.materialize(
        all_assets,
        selection=dg.AssetSelection.groups("ingestion"),
        resources=resources,
        instance=instance,
        tags=partition_range_tags(keys[0], keys[-1]),
    )
    assert ingest.success
    key = comparison_key(DATASET, TEMPORAL)
    # measured as the gate measures now (held-out NDCG@10 of 300 users, its standard error): unreachable beyond noise
    held_out = {"gate_ndcg10": 0.99, "gate_ndcg10_se": 0.005, "gate_users": 300}
    unbeatable = _save(
        store, wh, "lgbm_ranker", b"previous model", 0.99, key, run_id=PREVIOUS_RUN, promoted=True, metrics=held_out, gate_passed=True
    )
    # promoted later but on another dataset: a gate comparing across datasets would pass against it
    _save(store, wh, "lgbm_ranker", b"other dataset", 0.0, comparison_key("movielens-100k", TEMPORAL), run_id="x", promoted=True)
    served = pl.DataFrame({"user_id": [1, 1], "item_id": [10, 11], "score": [2.0, 1.0], "rank": [1, 2]}).with_columns(
        pl.lit("lgbm_ranker").alias("model"), pl.lit(unbeatable["version"]).alias("model_version")
    )
    wh.write_table("serving.recommendations", served)
    result = dg.materialize(
        [*all_assets, *all_checks],
        selection=dg.AssetSelection.assets("interactions").downstream(include_self=False) - dg.AssetSelection.assets("sequence_ranker"),
        resources=resources,
        instance=instance,
        partition_key=latest_cutoff(),
        run_config={"ops": FAST},
        raise_on_error=False,
    )
    return {"result": result, "resources": resources, "instance": instance, "unbeatable": unbeatable, "served": served, "key": key}


def test_failing_gate_still_evaluates_and_records_the_verdict(gated):
    result, wh = gated["result"], gated["resources"]["warehouse"]
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    checks = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert checks["lgbm_ranker"].check_name == "ndcg_regression" and not checks["lgbm_ranker"].passed
    assert checks["lgbm_ranker"].severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"lgbm_ranker", "evaluation", "recommendations"} <= materialized

    run_id = result.run_id
    stages = wh.query("SELECT DISTINCT stage FROM eval.metrics WHERE run_id = $r AND fold = 'test'", {"r": run_id})["stage"].to_list()
    assert "lgbm_ranker" in stages and "pool" in stages
    row = wh.query(
        "SELECT gate_passed, promoted, dataset, protocol, cutoff_rule, CAST(gate_details AS VARCHAR) AS d FROM models.registry "
        "WHERE name = 'lgbm_ranker' AND run_id = $r",
        {"r": run_id},
    ).row(0, named=True)
    details = json.loads(row["d"])
    assert row["gate_passed"] is False and row["promoted"] is False
    assert (row["dataset"], row["protocol"], row["cutoff_rule"]) == gated["key"]
    assert details["baseline_version"] == gated["unbeatable"]["version"] and details["floor"] == pytest.approx(0.99 * 0.9)
    # the held-out measure of every labelled valid user, out of fold (more than the early-stopping slice), against the
    # promoted model's: below the floor by more than the noise allowance the two standard errors make
    metrics = wh.query(
        "SELECT CAST(metrics AS VARCHAR) AS m FROM models.registry WHERE name = 'lgbm_ranker' AND run_id = $r", {"r": run_id}
    )
    metrics = json.loads(metrics["m"][0])
    assert metrics["gate_users"] > metrics["n_valid_users"] and metrics["gate_ndcg10_se"] > 0
    assert details["measure"] == f"held-out NDCG@10 of {metrics['gate_users']} labelled valid users (holdout_ndcg)"
    assert details["valid_ndcg10"] == pytest.approx(metrics["gate_ndcg10"]) and details["baseline_se"] == 0.005
    assert details["noise_allowance"] == pytest.approx(1.645 * math.hypot(metrics["gate_ndcg10_se"], 0.9 * 0.005))
    assert details["floor"] - details["valid_ndcg10"] > details["noise_allowance"] and "beyond the noise allowance" in details["reason"]
    check = wh.query(
        "SELECT passed, severity FROM quality.check_results WHERE asset = 'lgbm_ranker' AND \"check\" = 'ndcg_regression' AND run_id = $r",
        {"r": run_id},
    )
    assert check.rows() == [(False, "ERROR")]


def test_failing_gate_keeps_the_promoted_models_lists(gated):
    wh, unbeatable = gated["resources"]["warehouse"], gated["unbeatable"]
    assert wh.table("serving.recommendations").equals(gated["served"])
    promoted = wh.query("SELECT version FROM models.registry WHERE name = 'lgbm_ranker' AND promoted AND dataset = $d", {"d": DATASET})
    assert promoted["version"].to_list() == [unbeatable["version"]]
    export = wh.path.parent / "exports" / "recommendations.parquet"
    assert pl.read_parquet(export).equals(gated["served"])


def _recommend(gated):
    return dg.materialize(
        all_assets,
        selection=["recommendations"],
        partition_key=latest_cutoff(),
        resources=gated["resources"],
        instance=gated["instance"],
        raise_on_error=False,
    )


def test_gate_outcomes_decide_what_recommendations_serves(gated):
    wh, store = gated["resources"]["warehouse"], gated["resources"]["model_store"]
    # 1. no ranker passed and nothing promoted is being served: a clear failure, nothing promoted
    wh.write_table("serving.recommendations", gated["served"].with_columns(pl.lit("someone-else").alias("model_version")))
    failed = _recommend(gated)
    assert not failed.success
    message = " ".join(str(e.event_specific_data.error.message) for e in failed.all_events if e.is_step_failure)
    assert "lgbm_ranker: valid NDCG@10" in message and "floor 0.8910" in message
    # 2. a ranker whose gate passed is served and promoted; the failing one is not
    with wh.connect() as con:  # Warehouse.query reads through a read-only connection
        con.execute("CREATE OR REPLACE TABLE candidates.sequence_ranker AS SELECT * FROM candidates.lgbm_ranker")
    passing = _save(store, wh, "sequence_ranker", b"passing", 0.01, gated["key"], run_id="r2", gate_passed=True, gate_details={})
    served = _recommend(gated)
    assert served.success
    recs = wh.table("serving.recommendations")
    assert set(recs["model"]) == {"sequence_ranker"} and set(recs["model_version"]) == {passing["version"]}
    promoted = wh.query("SELECT name, version FROM models.registry WHERE promoted AND dataset = $d ORDER BY name", {"d": DATASET})
    assert promoted.rows() == [("lgbm_ranker", gated["unbeatable"]["version"]), ("sequence_ranker", passing["version"])]
