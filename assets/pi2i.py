"""Two-stage PI2I: pi2i_index (IBS, relaxed truncation) → pi2i_scorer (PRS model) → pi2i_candidates."""

import time

import dagster as dg
import polars as pl

from assets.catalog import catalog, observe, results, table_spec
from assets.common import DUCKDB_POOL, FOLDS, GPU_POOL, every_target_user, fold_users, load_catalogue, load_split, load_users, with_fold
from assets.features import selected_features
from assets.metadata import figure, md, png, table_metadata
from assets.partitions import cutoff_partitions
from recsys.event_features import with_selected_attributes
from recsys.pi2i.index import PI2IIndexChannel, build_relaxed_index, hit_rate_vs_depth
from recsys.pi2i.serve import PI2I
from resources.compute import ComputeResource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse


class PI2IIndexConfig(dg.Config):
    depth: int = 300  # relaxed truncation (hundreds); item CF's uniform depth is in the tens
    uniform_depth: int = 30
    k: int = 200
    curve_depths: list[int] = [10, 20, 30, 50, 100, 200, 300, 500]


@dg.multi_asset(
    specs=[
        table_spec(
            "pi2i_index",
            "candidates.pi2i_index",
            "PI2I stage 1 (IBS): trigger → target lists at a relaxed depth; relaxed lists ranked by co-occurrence alone in candidates.pi2i_index.",
            deps=["split"],
            kinds={"polars", "duckdb"},
        ),
        table_spec(
            "pi2i_depth_curve",
            "candidates.pi2i_depth_curve",
            "candidates.pi2i_depth_curve: PI2I stage 1 pool hit rate versus truncation depth, per fold.",
            deps=["split"],
            kinds={"polars", "duckdb"},
        ),
    ],
    can_subset=True,  # selecting either key runs the step, which writes both (catalog.results)
    pool=DUCKDB_POOL,
    group_name="pi2i",
    partitions_def=cutoff_partitions,
)
def pi2i_index(context: dg.AssetExecutionContext, config: PI2IIndexConfig, warehouse: Warehouse):
    data = load_split(warehouse)
    frames, curves, said = [], [], {}
    for fold in FOLDS:
        history, target = data.fold(fold)
        # valid: past RECDAG_TRAIN_USERS, the seeded sample every valid-fold stage uses (assets.common.fold_sample)
        users, sample = fold_users(fold, target, history, every_target_user(data.params), with_sample=True)
        said[fold] = sample.describe(f"{fold} users")
        # one build per fold, as deep as the curve's deepest point; the lists read its first config.depth slots
        index = build_relaxed_index(history, depth=max(config.depth, *config.curve_depths))
        channel = PI2IIndexChannel(depth=config.depth).fit_on_index(history, index)
        recs = channel.recommend(users, k=config.k, exclude_seen=True)
        frames.append(with_fold(recs, fold))
        curve = hit_rate_vs_depth(
            index, history, target.join(users.to_frame(), on="user_id", how="semi"), depths=tuple(config.curve_depths)
        )
        curves.append(curve.with_columns(pl.lit(fold).alias("fold")))
    warehouse.write_table("candidates.pi2i_index", pl.concat(frames))
    curve = pl.concat(curves)
    warehouse.write_table("candidates.pi2i_depth_curve", curve)
    index = dg.MaterializeResult(
        asset_key="pi2i_index",
        metadata={
            **table_metadata(warehouse, "candidates.pi2i_index"),
            "hit_rate_vs_depth": png(_curve_plot(curve, config.uniform_depth, config.depth)),
            "curve": md(curve.sort("fold", "depth"), 40),
            "valid_users": said["valid"],  # the curve's and the lists' valid users: N of M (seeded uniform sample)
            "relaxed_depth": config.depth,
            "uniform_depth": config.uniform_depth,
        },
    )
    depth_curve = dg.MaterializeResult(asset_key="pi2i_depth_curve", metadata=table_metadata(warehouse, "candidates.pi2i_depth_curve"))
    yield from results(context, index, depth_curve)


def _curve_plot(curve: pl.DataFrame, uniform: int, relaxed: int):
    fig, ax = figure(7, 4)
    for fold in curve["fold"].unique().sort().to_list():
        part = curve.filter(pl.col("fold") == fold).sort("depth")
        ax.plot(part["depth"].to_list(), part["hit_rate"].to_list(), marker="o", label=f"{fold} fold")
    ax.axvline(uniform, color="grey", linestyle="--", label=f"uniform depth {uniform}")
    ax.axvline(relaxed, color="black", linestyle=":", label=f"relaxed depth {relaxed}")
    ax.set_xscale("log")
    ax.set_xlabel("truncation depth per trigger")
    ax.set_ylabel("pool hit rate (target in the union of trigger lists)")
    ax.set_title("PI2I stage 1: hit rate versus depth")
    ax.legend(fontsize=8)
    return fig


class PI2IScorerConfig(dg.Config):
    params: dict = {}  # PI2I(...) keyword overrides: depth, epochs, n_triggers, seq_len, ...


@dg.asset(
    deps=["pi2i_index", selected_features],
    pool=GPU_POOL,
    group_name="pi2i",
    partitions_def=cutoff_partitions,
    kinds={"torch"},
    **catalog(layer="models"),  # model files in the model store, one models.registry row per fold
    description="PI2I stage 2 (PRS): interactive scoring model with target attention, softmax over the trigger's own list; one model per fold, in the model store.",
)
def pi2i_scorer(
    context: dg.AssetExecutionContext, config: PI2IScorerConfig, warehouse: Warehouse, model_store: ModelStore, compute: ComputeResource
) -> dg.MaterializeResult:
    data = load_split(warehouse)
    selected = warehouse.table("features.selected_features")["feature"].to_list()
    users, chosen = with_selected_attributes(load_users(warehouse), "user_id", selected)
    runtime = compute.runtime(log=context.log.info)
    versions, reports = {}, {}
    for fold in FOLDS:
        history, _ = data.fold(fold)
        items = load_catalogue(warehouse, history)  # no item first seen in the fold's future
        started = time.monotonic()
        model = PI2I(**config.params).fit(history, items=items, users=users, user_features=chosen, runtime=runtime)
        report = dict(getattr(model, "report_", {}) or {})
        report["fit_seconds"] = round(time.monotonic() - started, 1)
        saved = model_store.save(
            warehouse,
            f"pi2i_{fold}",
            model.to_bytes(),
            {**config.params, "user_features": chosen},
            {k: v for k, v in report.items() if isinstance(v, (int, float, str))},
            context.run.run_id,
        )
        versions[fold], reports[fold] = saved["version"], report
    observe(context, warehouse, "models.registry")
    return dg.MaterializeResult(
        metadata={
            "user_features": ", ".join(chosen) or "none",
            "versions": dg.MetadataValue.json(versions),
            "training": dg.MetadataValue.json(_jsonable(reports)),
            "compute": dg.MetadataValue.json(compute.describe()),
        }
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


class PI2ICandidatesConfig(dg.Config):
    k: int = 200


@dg.asset(
    deps=[pi2i_scorer],
    pool=GPU_POOL,
    group_name="pi2i",
    partitions_def=cutoff_partitions,
    kinds={"torch", "duckdb"},
    description="PI2I serving: recent items as triggers, union of relaxed lists as candidates, personalized top-K by the PRS score (candidates.pi2i).",
    **catalog("candidates.pi2i"),
)
def pi2i_candidates(
    context: dg.AssetExecutionContext, config: PI2ICandidatesConfig, warehouse: Warehouse, model_store: ModelStore, compute: ComputeResource
) -> dg.MaterializeResult:
    data = load_split(warehouse)
    runtime = compute.runtime(log=context.log.info)
    frames, said, depths = [], {}, {}
    for fold in FOLDS:
        history, target = data.fold(fold)
        latest = model_store.latest(warehouse, f"pi2i_{fold}")
        if latest is None:
            raise RuntimeError(f"no pi2i_{fold} model in models.registry; materialize pi2i_scorer first")
        model = PI2I.from_bytes(model_store.load(latest["path"]), runtime=runtime)
        users, sample = fold_users(fold, target, history, every_target_user(data.params), with_sample=True)
        said[fold] = sample.describe(f"{fold} users")
        recs = model.recommend(users, k=config.k, exclude_seen=True)
        depths[fold] = model.serving_depth_  # under the model's max_score_pairs: each trigger list's scored head
        frames.append(with_fold(recs, fold))
    out = pl.concat(frames)
    warehouse.write_table("candidates.pi2i", out)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, "candidates.pi2i"),
            "rows": out.height,
            "users": out["user_id"].n_unique(),
            "valid_users": said["valid"],
            "serving_depth": dg.MetadataValue.json(depths),
        }
    )
