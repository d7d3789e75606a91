"""evaluation: every stage on the test fold — accuracy with bootstrap intervals per cohort,
beyond-accuracy, exposure fairness, paired tests of the ranker chosen on valid against every other stage (Holm) —
into eval.metrics, with the report a person reads on the asset page and the self-contained HTML report
($RECDAG_DATA_DIR/exports/report.html, rewritten with the pooled cut-offs by evaluation_summary).

At scale: past ``max_users`` test users (RECDAG_EVAL_USERS, default 50,000) the per-user accuracy of
every stage — intervals, cohorts, paired tests, eval.per_user — is taken over one seeded uniform sample
of them, the same users for every stage (recsys.metrics.sampling), recorded in eval.user_sample and
stated in the report with the NDCG@10 interval width. Coverage, novelty, diversity and exposure fairness
stay over every user's list: they are catalogue-level (a sample would lower coverage and raise Gini)
and cost one linear group-by each."""

import dagster as dg
import polars as pl

from assets.catalog import IO_RETRY, SERVING_FRESHNESS, observe, results, table_spec
from assets.common import (
    DUCKDB_POOL,
    engine_kinds,
    eval_rows,
    eval_tags,
    fold_truth,
    load_candidates,
    load_catalogue,
    load_split,
    sample_truth,
)
from assets.metadata import figure, headline_table, md, paired_table, paired_verdicts, png, table_metadata
from assets.partitions import cutoff_partitions
from assets.rankers import RANKER_STAGES, lgbm_ranker, sequence_ranker
from assets.retrieval import ACCURACY_METRICS, CHANNEL_STAGES, retrieval_evaluation
from recsys.backtest import paired_against
from recsys.metrics import beyond_accuracy, bootstrap_ci, cohorts, evaluate_cohorts, item_fairness, item_popularity
from recsys.metrics.sampling import sample_note
from resources.datasets import DatasetSource
from resources.engine import SqlEngine
from resources.model_store import ModelStore
from resources.reports import write_report
from resources.warehouse import Warehouse, utcnow

EVAL_KS = (5, 10, 20, 50, 100)
BASELINES = ("pop", "itemcf", "als", "ease", "tgh")
HEADLINE_K = 10


class EvaluationConfig(dg.Config):
    n_boot: int = 500
    seed: int = 0  # the bootstrap's and, past max_users, the user sample's
    max_users: int = 0  # per-user evaluation budget; 0: RECDAG_EVAL_USERS (default 50,000)
    extra_stages: list[str] = []  # further candidates.<stage> tables to evaluate (e.g. pi2i)


def evaluated_stages(warehouse: Warehouse, extra: list[str]) -> list[str]:
    stages = CHANNEL_STAGES + ["pool", *RANKER_STAGES, "final", *extra]
    out = []
    for stage in stages:
        table = "candidates.pool_ranked" if stage == "pool" else f"candidates.{stage}"
        if stage not in out and warehouse.table_exists(table):
            out.append(stage)
    return out


EVALUATION_DEPS = [lgbm_ranker, sequence_ranker, "final_stage", retrieval_evaluation]


@dg.multi_asset(
    specs=[
        table_spec(
            "evaluation",
            "eval.per_user",
            "Every stage on the test fold: accuracy@K with bootstrap 95% CIs per cohort, coverage/novelty/diversity/popularity, "
            "exposure fairness, paired test; rows in eval.metrics (catalog: eval_metrics), per-user values in eval.per_user, "
            "the HTML report.",
            deps=EVALUATION_DEPS,
            kinds=engine_kinds("polars", "duckdb"),
            freshness_policy=SERVING_FRESHNESS,
        ),
        table_spec(
            "last_paired_test",
            "eval.last_paired_test",
            "eval.last_paired_test: the newest evaluation's paired tests of the ranker chosen on valid against every other "
            "stage (NDCG@10, Holm-corrected).",
            deps=EVALUATION_DEPS,
            kinds={"polars", "duckdb"},
        ),
        table_spec(
            "eval_user_sample",
            "eval.user_sample",
            "eval.user_sample: who each evaluation scored on the test fold: all its users, or past RECDAG_EVAL_USERS a seeded "
            "uniform sample of them (n_users, n_sampled, budget, seed), the same users for every stage.",
            deps=EVALUATION_DEPS,
            kinds={"duckdb"},
        ),
    ],
    can_subset=True,  # selecting either key runs the step, which writes both (catalog.results)
    pool=DUCKDB_POOL,
    group_name="evaluation",
    partitions_def=cutoff_partitions,
    retry_policy=IO_RETRY,  # writes the HTML report
)
def evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    warehouse: Warehouse,
    source: DatasetSource,
    model_store: ModelStore,
    engine: SqlEngine,
):
    data = load_split(warehouse)
    tags = eval_tags(context.run.run_id, data, source)
    history, target, every_truth = fold_truth(data, "test")
    # past the budget, one seeded uniform sample of the test users, the same for every stage (paired tests stay paired)
    truth, sample = sample_truth(target, every_truth, config.seed, config.max_users or None)
    if sample.sampled:
        context.log.info(f"evaluation: {sample.describe()}")
    # the catalogue as of the end of the test window: coverage and exposure are shares of the items
    # that existed then, not of items that appear later (a cut-off's numbers never change with new data)
    items = load_catalogue(warehouse, pl.concat([history.select("ts"), target.select("ts")]))
    pop = item_popularity(history)
    members = cohorts(history, every_truth, pop)  # cohort thresholds over every test user, whoever is sampled
    if sample.sampled:
        members = members.join(truth.select(pl.col("user_id").cast(pl.Int64)).unique(), on="user_id", how="semi")
    n_items = items.height
    stages = evaluated_stages(warehouse, list(config.extra_stages))
    rows, per_user_all, per_user_rows = [], {}, []
    for stage in stages:
        recs = load_candidates(warehouse, "pool_ranked" if stage == "pool" else stage, "test")
        scored = recs.join(members.select("user_id").unique(), on="user_id", how="semi") if sample.sampled else recs
        # per-user accuracy by sql/eval/per_user_metrics.sql on the engine (DuckDB, or Spark under RECDAG_ENGINE=spark)
        per_user = evaluate_cohorts(
            scored, truth, members, pop, ks=EVAL_KS, metrics=ACCURACY_METRICS, per_user=True, scorer=engine.per_user_metrics
        )
        per_user_all[stage] = per_user
        with_ci = bootstrap_ci(per_user, n_boot=config.n_boot, seed=config.seed)
        tag = dict(**tags, fold="test", stage=stage)
        per_user_rows.append(
            per_user.filter(pl.col("cohort") == "all").select(
                pl.lit(tags["run_id"]).alias("run_id"),
                pl.lit(utcnow()).alias("evaluated_at"),
                pl.lit(tags["dataset"]).alias("dataset"),
                pl.lit(tags["protocol"]).alias("protocol"),
                pl.lit(tags["cutoff"], pl.Utf8).alias("cutoff"),
                pl.lit(stage).alias("stage"),
                pl.col("user_id").cast(pl.Int64),
                pl.col("metric").cast(pl.Utf8),
                pl.col("k").cast(pl.Int32),
                pl.col("value").cast(pl.Float64),
            )
        )
        rows.append(eval_rows(with_ci, **tag))
        rows.append(eval_rows(beyond_accuracy(recs, pop, n_items, ks=(10, 20), item_features=items, column="category_id"), **tag))
        rows.append(eval_rows(item_fairness(recs, n_items, ks=(10, 20)), **tag))
    out = pl.concat(rows, how="vertical")
    sample_row = pl.DataFrame(
        [
            {
                **{k: tags[k] for k in ("run_id", "dataset", "protocol", "cutoff")},
                "evaluated_at": utcnow(),
                "fold": "test",
                **sample.as_dict(),
            }
        ],
        schema_overrides={"cutoff": pl.Utf8},
    )
    with warehouse.connect() as con:
        con.begin()
        warehouse.append("eval.metrics", out, con=con)
        warehouse.append("eval.per_user", pl.concat(per_user_rows, how="vertical"), con=con)
        warehouse.append("eval.user_sample", sample_row, con=con)
        con.commit()
    widths = _interval_widths(out)

    headline = _headline(out)
    best_ranker, best_baseline, paired = _paired(out, per_user_all, warehouse, model_store, config)
    if paired is not None and paired.height:
        warehouse.write_table("eval.last_paired_test", paired.with_columns(pl.lit(context.run.run_id).alias("run_id")))
    history_table = warehouse.query_file("analytics/evaluation_past_runs", {"dataset": tags["dataset"], "protocol": tags["protocol"]})
    report = write_report(warehouse, context.run.run_id)  # evaluation_summary rewrites it with the pooled tests
    observe(context, warehouse, "eval.metrics")
    evaluated = dg.MaterializeResult(
        asset_key="evaluation",
        metadata={
            **table_metadata(warehouse, "eval.per_user", "run_id = $run", {"run": context.run.run_id}),
            "headline": headline_table(
                out.filter((pl.col("cohort") == "all") & (pl.col("k") == HEADLINE_K) & pl.col("ci_low").is_not_null())
            ),
            "headline_with_beyond_accuracy": md(headline, 40),
            "ndcg_vs_k": png(_metric_vs_k(out, "ndcg")),
            "funnel": png(_funnel(out)),
            "fairness": png(_fairness(out)),
            "cohorts_ndcg10": md(_cohort_table(out), 60),
            "paired_tests_holm": paired_table(paired),
            "paired_verdicts": paired_verdicts(paired),
            "best_ranker": best_ranker or "",
            "best_baseline": best_baseline or "",
            "past_runs": md(history_table, 30),
            "stages": ", ".join(stages),
            "users_evaluated": sample.n_sampled,
            "test_users": sample.n_users,
            "user_sample": sample_note(sample, widths.values()),
            "ndcg10_interval_width": dg.MetadataValue.json({stage: round(w, 5) for stage, w in widths.items()}),
            "report": dg.MetadataValue.path(str(report)),
        },
    )
    written = [evaluated, dg.MaterializeResult(asset_key="eval_user_sample", metadata=table_metadata(warehouse, "eval.user_sample"))]
    if paired is not None and paired.height:
        written.append(dg.MaterializeResult(asset_key="last_paired_test", metadata=table_metadata(warehouse, "eval.last_paired_test")))
    yield from results(context, *written)


def _interval_widths(out: pl.DataFrame) -> dict[str, float]:
    """stage -> ci_high − ci_low of NDCG@10 (test fold, all users): what the sample size buys."""
    rows = out.filter(
        (pl.col("cohort") == "all") & (pl.col("metric") == "ndcg") & (pl.col("k") == HEADLINE_K) & pl.col("ci_low").is_not_null()
    )
    return dict(zip(rows["stage"].to_list(), (rows["ci_high"] - rows["ci_low"]).to_list()))


def _headline(out: pl.DataFrame) -> pl.DataFrame:
    acc = out.filter((pl.col("cohort") == "all") & (pl.col("k") == HEADLINE_K) & pl.col("metric").is_in(["ndcg", "recall", "hit_rate"]))
    fmt = acc.with_columns(
        pl.format("{} [{}, {}]", pl.col("value").round(4), pl.col("ci_low").round(4), pl.col("ci_high").round(4)).alias("cell")
    ).pivot(on="metric", index="stage", values="cell")
    extra = out.filter((pl.col("k") == HEADLINE_K) & pl.col("metric").is_in(["coverage", "novelty", "gini_norm"])).pivot(
        on="metric", index="stage", values="value"
    )
    order = out.filter((pl.col("cohort") == "all") & (pl.col("k") == HEADLINE_K) & (pl.col("metric") == "ndcg")).select("stage", "value")
    return (
        fmt.join(extra, on="stage", how="left")
        .join(order, on="stage")
        .sort("value", descending=True)
        .drop("value")
        .rename({c: f"{c}@{HEADLINE_K}" for c in fmt.columns if c != "stage"})
    )


def _paired(out, per_user_all, warehouse, model_store, config):
    """The ranker chosen on valid against every other stage on NDCG@10 (the same users), Holm-adjusted.

    Returns (reference ranker, strongest baseline on test, the comparisons): the strongest baseline is
    named for the reader; every stage is in the Holm family, so picking it on test adds nothing."""
    scored = {}
    for name in RANKER_STAGES:
        latest = model_store.latest(warehouse, name)
        if latest is not None and name in per_user_all:
            scored[name] = latest["metrics"].get("valid_ndcg10") or 0.0
    baselines = out.filter(
        pl.col("stage").is_in(BASELINES) & (pl.col("metric") == "ndcg") & (pl.col("k") == HEADLINE_K) & (pl.col("cohort") == "all")
    ).sort("value", descending=True)
    if not scored:
        return None, None, None
    # the served list (final_stage's choice on valid) when there is one, else the ranker chosen on valid
    best_ranker = "final" if "final" in per_user_all else max(scored, key=scored.get)
    best_baseline = baselines["stage"][0] if baselines.height else None
    per_user = pl.concat(
        [
            frame.filter(pl.col("cohort") == "all").select(
                pl.lit(stage).alias("stage"), pl.lit("this").alias("cutoff"), "user_id", "metric", "k", "value"
            )
            for stage, frame in per_user_all.items()
        ]
    )
    paired = paired_against(per_user, best_ranker, HEADLINE_K, n_boot=config.n_boot, seed=config.seed)
    return best_ranker, best_baseline, paired.drop("n_cutoffs")


def _cohort_table(out: pl.DataFrame) -> pl.DataFrame:
    return (
        out.filter((pl.col("metric") == "ndcg") & (pl.col("k") == HEADLINE_K) & pl.col("ci_low").is_not_null())
        .pivot(on="cohort", index="stage", values="value")
        .sort("stage")
    )


def _metric_vs_k(out: pl.DataFrame, metric: str):
    fig, ax = figure(7, 4)
    part = out.filter((pl.col("metric") == metric) & (pl.col("cohort") == "all") & pl.col("ci_low").is_not_null())
    for stage in part["stage"].unique().sort().to_list():
        s = part.filter(pl.col("stage") == stage).sort("k")
        ax.plot(s["k"].to_list(), s["value"].to_list(), marker="o", label=stage)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel(f"{metric}@K (test)")
    ax.set_title(f"{metric} versus K per stage")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _funnel(out: pl.DataFrame):
    fig, ax = figure(7, 4)
    part = out.filter((pl.col("metric") == "recall") & (pl.col("cohort") == "all") & (pl.col("k") == 50)).sort("value")
    ax.barh(part["stage"].to_list(), part["value"].to_list(), color="#3b7dd8")
    ax.set_xlabel("Recall@50 (test)")
    ax.set_title("Funnel: what each stage keeps")
    return fig


def _fairness(out: pl.DataFrame):
    fig, ax = figure(7, 4)
    part = out.filter((pl.col("metric") == "gini_norm") & (pl.col("k") == HEADLINE_K)).sort("value")
    ax.barh(part["stage"].to_list(), part["value"].to_list(), color="#d8893b")
    ax.set_xlabel(f"corrected Gini of item exposure @{HEADLINE_K} (0 = equal, 1 = concentrated)")
    ax.set_title("Item-exposure fairness (Rampisela et al. 2024)")
    return fig
