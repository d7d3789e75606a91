"""Rolling-origin cut-offs as Dagster partitions: each cut-off evaluated on its own windows, then pooled."""

import dagster as dg
import polars as pl
from dagster_support import ingest_every_day, local_resources

from assets.partitions import CUTOFF_WINDOW_DAYS, cutoff_partitions
from orchestration.definitions import all_assets, all_checks

# two runs per cut-off: evaluation's own upstream (the rankers) is left out, so it must come after
CHAIN = (["split", "candidates_pop", "candidates_itemcf"], ["evaluation"])


def test_two_cutoffs_are_evaluated_separately_and_pooled(tmp_path):
    resources = local_resources(tmp_path, "synthetic:30000")
    instance = dg.DagsterInstance.ephemeral()
    ingest_every_day(resources, instance)
    cutoffs = cutoff_partitions.get_partition_keys()[-2:]
    for cutoff in cutoffs:
        for selection in CHAIN:
            result = dg.materialize(
                [*all_assets, *all_checks],
                selection=selection,
                partition_key=cutoff,
                resources=resources,
                instance=instance,
                run_config={"ops": {"evaluation": {"config": {"n_boot": 100}}}} if selection == ["evaluation"] else None,
            )
            assert result.success
        params = resources["warehouse"].query("SELECT CAST(params AS VARCHAR) AS p FROM staging.split_params").row(0)[0]
        assert f'"cutoff": "{cutoff}"' in params and f'"window_days": {CUTOFF_WINDOW_DAYS}' in params
    summary = dg.materialize([*all_assets, *all_checks], selection=["evaluation_summary"], resources=resources, instance=instance)
    assert summary.success
    meta = summary.asset_materializations_for_node("evaluation_summary")[0].metadata
    assert meta["n_cutoffs"].value == 2 and meta["cutoffs"].value == ", ".join(cutoffs)

    wh = resources["warehouse"]
    per_cutoff = wh.query(
        "SELECT cutoff, stage, n_users, value FROM eval.metrics WHERE fold = 'test' AND cohort = 'all' AND metric = 'ndcg' "
        "AND k = 10 AND ci_low IS NOT NULL AND cutoff <> 'pooled'"
    )
    assert sorted(per_cutoff["cutoff"].unique()) == cutoffs
    pooled = wh.query("SELECT stage, n_users, value FROM eval.metrics WHERE cutoff = 'pooled' AND metric = 'ndcg' AND k = 10")
    for stage in ("pop", "itemcf"):
        parts = per_cutoff.filter(pl.col("stage") == stage)
        row = pooled.filter(pl.col("stage") == stage).row(0, named=True)
        assert row["n_users"] == parts["n_users"].sum()  # every (cut-off, user) unit, no user lost or double counted
        weighted = (parts["value"] * parts["n_users"]).sum() / parts["n_users"].sum()
        assert abs(row["value"] - weighted) < 1e-9  # the pooled mean is the unit-weighted mean of the cut-offs
    # the test windows do not overlap: a cut-off's test events are before the next cut-off
    assert cutoffs[0] < cutoffs[1]
