"""The valid fold past its user budget (RECDAG_TRAIN_USERS): channels make valid candidates only for the seeded
sample of valid users (assets.common.fold_users), the pool holds only them, and retrieval_evaluation scores the
valid fold over them (not counting the others as misses); the test fold keeps every user."""

import dagster as dg
import polars as pl
from dagster_support import ingest_every_day, local_resources

from assets.common import fold_users, load_split, target_users, warm_truth
from assets.partitions import latest_cutoff
from assets.retrieval import CHANNEL_STAGES
from orchestration.definitions import all_assets, all_checks
from recsys.schema import RECOMMENDATION_SCHEMA

BUDGET = 50
STAGES = ["pop", "itemcf"]


def _materialize(resources, instance, selection):
    result = dg.materialize(
        [*all_assets, *all_checks], selection=selection, partition_key=latest_cutoff(), resources=resources, instance=instance
    )
    assert result.success
    return result


def _metadata(result, key: str) -> dict:
    [mat] = [m for m in result.asset_materializations_for_node(key) if m.asset_key == dg.AssetKey(key)]
    return {k: v.value for k, v in mat.metadata.items()}


def test_valid_fold_lists_and_metrics_follow_the_train_users_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("RECDAG_TRAIN_USERS", str(BUDGET))
    monkeypatch.delenv("RECDAG_EVAL_USERS", raising=False)
    resources = local_resources(tmp_path, "synthetic:30000")
    instance = dg.DagsterInstance.ephemeral()
    ingest_every_day(resources, instance)
    channels = _materialize(resources, instance, ["split", *(f"candidates_{s}" for s in STAGES)])
    warehouse = resources["warehouse"]
    empty = pl.DataFrame(schema={"fold": pl.Utf8, **RECOMMENDATION_SCHEMA})
    for stage in CHANNEL_STAGES:  # the other channels: present, with no lists (build_pool takes empty channels)
        if stage not in STAGES:
            warehouse.write_table(f"candidates.{stage}", empty)
    evaluated = _materialize(resources, instance, ["candidate_pool", "candidates_pool_ranked", "retrieval_evaluation"])

    data = load_split(warehouse)
    users, everyone = {}, {}
    for fold in ("valid", "test"):
        history, target = data.fold(fold)
        users[fold], everyone[fold] = set(fold_users(fold, target, history)), set(target_users(target, history))
    assert len(users["valid"]) == BUDGET < len(everyone["valid"]) and users["valid"] <= everyone["valid"]
    assert users["test"] == everyone["test"]  # the test fold is never sampled

    def listed(table: str, fold: str) -> set:
        return set(warehouse.query(f"SELECT DISTINCT user_id FROM {table} WHERE fold = $f", {"f": fold})["user_id"])

    for fold in ("valid", "test"):
        assert listed("candidates.pop", fold) == users[fold]
        assert listed("candidates.itemcf", fold) <= users[fold]
        assert listed("candidates.pool", fold) == users[fold] == listed("candidates.pool_ranked", fold)
    said = f"{BUDGET} of {len(everyone['valid']):,} valid users (seeded uniform sample, seed 0)"
    assert all(_metadata(channels, f"candidates_{s}")["valid_users"] == said for s in STAGES)

    # retrieval_evaluation: the valid fold over the sampled users with truth, the test fold over every user
    history, target = data.fold("valid")
    valid_truth_users = warm_truth(target, history).filter(pl.col("user_id").is_in(list(users["valid"])))["user_id"].n_unique()
    test_truth_users = warm_truth(*reversed(data.fold("test")))["user_id"].n_unique()
    metrics = warehouse.query("SELECT fold, stage, n_users FROM eval.metrics WHERE run_id = $r", {"r": evaluated.run_id})
    n_users = {(f, s): set(part["n_users"]) for (f, s), part in metrics.group_by("fold", "stage")}
    for stage in [*STAGES, "pool"]:
        assert n_users["valid", stage] == {valid_truth_users} and n_users["test", stage] == {test_truth_users}
    assert _metadata(evaluated, "retrieval_evaluation")["valid_users"] == said
