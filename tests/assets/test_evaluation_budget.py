"""evaluation past its user budget (RECDAG_EVAL_USERS): every stage on the same seeded uniform sample of
test users, recorded in eval.user_sample and said in the report; at or above the budget nothing changes."""

import dagster as dg
import polars as pl
from dagster_support import ingest_every_day, local_resources

from assets.partitions import latest_cutoff
from orchestration.definitions import all_assets, all_checks

BUDGET = 100
STAGES = ["candidates_pop", "candidates_itemcf"]


def _materialize(resources, instance, selection, config=None):
    result = dg.materialize(
        [*all_assets, *all_checks],
        selection=selection,
        partition_key=latest_cutoff(),
        resources=resources,
        instance=instance,
        run_config={"ops": {"evaluation": {"config": {"n_boot": 50, **(config or {})}}}} if "evaluation" in selection else None,
    )
    assert result.success
    return result


def test_evaluation_samples_users_past_the_budget_and_changes_nothing_under_it(tmp_path, monkeypatch):
    monkeypatch.delenv("RECDAG_EVAL_USERS", raising=False)
    resources = local_resources(tmp_path, "synthetic:30000")
    instance = dg.DagsterInstance.ephemeral()
    ingest_every_day(resources, instance)
    _materialize(resources, instance, ["split", *STAGES])
    warehouse = resources["warehouse"]

    def evaluate(config=None) -> tuple[str, dict]:
        result = _materialize(resources, instance, ["evaluation"], config)
        [mat] = [m for m in result.asset_materializations_for_node("evaluation") if m.asset_key == dg.AssetKey("evaluation")]
        return result.run_id, mat.metadata

    def rows(run: str, table: str, columns: str, where: str = "true") -> pl.DataFrame:
        return warehouse.query(f"SELECT {columns} FROM {table} WHERE run_id = $r AND {where} ORDER BY ALL", {"r": run})

    metric_cols = "stage, cohort, metric, k, value, ci_low, ci_high, n_users"
    full_run, full_meta = evaluate()
    [full] = rows(full_run, "eval.user_sample", "n_users, n_sampled, sampled, method").to_dicts()
    n_users = full["n_users"]
    assert n_users > BUDGET and full == {"n_users": n_users, "n_sampled": n_users, "sampled": False, "method": "all"}
    assert full_meta["users_evaluated"].value == n_users and full_meta["user_sample"].value.startswith(f"all {n_users:,} test users")

    monkeypatch.setenv("RECDAG_EVAL_USERS", str(BUDGET))
    sampled_run, sampled_meta = evaluate()
    [sample] = rows(sampled_run, "eval.user_sample", "n_users, n_sampled, sampled, seed").to_dicts()
    assert sample == {"n_users": n_users, "n_sampled": BUDGET, "sampled": True, "seed": 0}
    per_user = rows(sampled_run, "eval.per_user", "stage, user_id")
    users = {stage: set(part["user_id"]) for (stage,), part in per_user.group_by("stage")}
    assert set(users) == {"pop", "itemcf"} and users["pop"] == users["itemcf"] and len(users["pop"]) == BUDGET
    assert users["pop"] <= set(rows(full_run, "eval.per_user", "user_id")["user_id"])
    metrics = rows(sampled_run, "eval.metrics", metric_cols)
    assert set(metrics.filter((pl.col("cohort") == "all") & pl.col("ci_low").is_not_null())["n_users"]) == {BUDGET}
    beyond = "metric IN ('coverage', 'gini_norm')"  # catalogue-level: every user's list, sampled or not
    assert rows(sampled_run, "eval.metrics", "stage, metric, k, value", beyond).equals(
        rows(full_run, "eval.metrics", "stage, metric, k, value", beyond)
    )
    stated = f"{BUDGET} of {n_users:,} test users (seeded uniform sample, seed 0); NDCG@10 95% interval width"
    assert sampled_meta["user_sample"].value.startswith(stated)
    assert stated in (tmp_path / "exports" / "report.html").read_text()

    # a budget of exactly the number of users: every user, the same numbers as without a budget
    monkeypatch.delenv("RECDAG_EVAL_USERS")
    same_run, _ = evaluate({"max_users": n_users})
    assert rows(same_run, "eval.metrics", metric_cols).equals(rows(full_run, "eval.metrics", metric_cols))
    assert rows(same_run, "eval.per_user", "stage, user_id, metric, k, value").equals(
        rows(full_run, "eval.per_user", "stage, user_id, metric, k, value")
    )
