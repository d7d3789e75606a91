"""The rankers' frames (ranker_dataset) at scale: sql/features/ranker_history.sql on DuckDB (in a warehouse file, as
the asset runs it) and on Spark local mode, beside the polars/numpy implementation it replaced (issues 10 and 14).

    python bench/bench_ranker_frames.py                                   # 1M and 10M events, global cut-off
    python bench/bench_ranker_frames.py --sizes 1000000 --cutoff per_user # leave-last-out's per-user cut-offs

Data: the synthetic log (recsys.synthetic) of N events as staging.split (train: days 1-20, valid: 21-25, test: the
rest; bench_engine_item_index.make_lake). The frame is the valid fold's: its users with train history, at most
20,000 of them (the rankers' default budget, RECDAG_TRAIN_USERS; a seeded uniform sample), 300 candidates each (the
200 most popular train items and 100 drawn uniformly from the catalogue), two channels' scores; labels from the
valid fold; blocks of 20,000 users.

Runs, each in a fresh subprocess (peak RSS: the subprocess and its children, sampled every 0.1 s):
- ``before``: ``iter_ranker_frames`` as of commit d254aa4 (polars joins; numpy prefix counts and a scipy sparse
  product for co-occurrence), loaded from git; the train and valid folds read into memory first;
- ``duckdb``: ``resources.ranker_frames.fold_frames`` over a warehouse file holding staging.split (loading the
  Parquet into it is timed apart: the pipeline's split asset has already done it);
- ``spark``: the same on Spark local[2] over the lake's staging.split (session start timed apart).
The DuckDB and Spark frames must be identical; against ``before`` the largest difference per column is reported
(the days are now a division instead of a product with 1/day; degrees for the cosine are exact integers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

BEFORE = "d254aa4"  # the last commit with the polars/numpy ranker features
USERS, POPULAR, RANDOM, BLOCK = 20_000, 200, 100, 20_000


def _split(lake: str) -> pl.DataFrame:
    from resources.lake import Lake

    return pl.read_parquet(Lake(lake).table_files("staging.split"), hive_partitioning=True)


def make_pool(lake: str, n: int, path: str) -> dict:
    """The valid fold's pool (module docstring) and the items frame, written to ``path``(.items)."""
    from recsys.synthetic import SyntheticConfig, SyntheticReader

    split = _split(lake)
    train, valid = split.filter(pl.col("fold") == "train"), split.filter(pl.col("fold") == "valid")
    users = np.sort(valid.filter(pl.col("user_id").is_in(train["user_id"].unique().implode()))["user_id"].unique().to_numpy())
    rng = np.random.default_rng(0)
    if len(users) > USERS:
        users = np.sort(rng.choice(users, USERS, replace=False))
    popular = train.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False]).head(POPULAR)
    catalogue = train["item_id"].unique().sort().to_numpy()
    pop_ids, pop_counts = popular["item_id"].to_numpy(), popular["len"].to_numpy().astype(float)
    drawn = rng.choice(catalogue, (len(users), RANDOM))
    user_col = np.concatenate([np.repeat(users, POPULAR), np.repeat(users, RANDOM)])
    item_col = np.concatenate([np.tile(pop_ids, len(users)), drawn.ravel()])
    pool = pl.DataFrame({"user_id": user_col, "item_id": item_col}).unique(["user_id", "item_id"], keep="first", maintain_order=True)
    pool = pool.with_columns(
        pl.col("item_id").replace_strict(pop_ids, pop_counts, default=None, return_dtype=pl.Float64).alias("pop__score"),
        pl.Series("rnd__score", rng.normal(size=pool.height)),
    ).with_columns(
        pl.col("pop__score").rank("ordinal", descending=True).over("user_id").cast(pl.Int32).alias("pop__rank"),
        pl.col("rnd__score").rank("ordinal", descending=True).over("user_id").cast(pl.Int32).alias("rnd__rank"),
    )
    pool.sort("user_id", "item_id").write_parquet(path)
    SyntheticReader(SyntheticConfig(n_interactions=n, seed=0)).items().write_parquet(path + ".items")
    return {"pool_rows": pool.height, "pool_users": len(users)}


def worker(kind: str, lake: str, pool_path: str, cutoff: str, out: str) -> None:
    phases = {}
    started = time.monotonic()
    pool, items = pl.read_parquet(pool_path), pl.read_parquet(pool_path + ".items")
    if kind == "before":
        source = subprocess.run(["git", "show", f"{BEFORE}:recsys/rankers/features.py"], cwd=ROOT, capture_output=True, check=True).stdout
        path = Path(out).with_suffix(".before.py")
        path.write_bytes(source)
        spec = importlib.util.spec_from_file_location("ranker_features_before", path)
        before = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)
        split = _split(lake).drop("event_date").with_columns(pl.col("ts").dt.date().alias("event_date"))
        history = split.filter(pl.col("fold") == "train").drop("fold")
        target = split.filter(pl.col("fold") == "valid").drop("fold")
        del split
        phases["read_s"] = time.monotonic() - started
        blocks = before.iter_ranker_frames(pool, history, items, None, target=target, cutoff=cutoff, block_users=BLOCK)
    else:
        from resources.engine import SqlEngine
        from resources.ranker_frames import fold_frames
        from resources.warehouse import Warehouse

        warehouse = Warehouse(data_dir=os.path.dirname(out))
        if kind == "duckdb":
            from resources.lake import Lake

            engine = SqlEngine(engine="duckdb")
            with warehouse.connect() as con:
                con.execute("SET threads = 2")
                files = Lake(lake).table_files("staging.split")
                con.execute(
                    "CREATE OR REPLACE TABLE staging.split AS SELECT * FROM read_parquet($f, hive_partitioning = true)", {"f": files}
                )
            phases["load_s"] = time.monotonic() - started
        else:
            engine = SqlEngine(engine="spark", lake_dir=lake)
            _ = engine.spark
            phases["session_s"] = time.monotonic() - started
        blocks = fold_frames(engine, warehouse, pool, "valid", items, None, cutoff=cutoff, block_users=BLOCK)
    rows = 0
    for i, block in enumerate(blocks):  # each block written as it comes, as ranker_dataset does
        block.write_parquet(f"{out}.{i:04d}")
        rows += block.height
    phases["total_s"] = time.monotonic() - started
    Path(out + ".json").write_text(json.dumps({**{k: round(v, 2) for k, v in phases.items()}, "rows": rows}))


def measure(kind: str, lake: str, pool_path: str, cutoff: str, tmp: str) -> dict:
    from bench_engine_item_index import run_measured

    folder = os.path.join(tmp, kind)
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, "frame")
    cmd = [sys.executable, __file__, "--worker", kind, "--lake", lake, "--pool", pool_path, "--cutoff", cutoff, "--out", out]
    peak, load = run_measured(kind, cmd)
    phases = json.loads(Path(out + ".json").read_text())
    frame = pl.concat([pl.read_parquet(p) for p in sorted(Path(folder).glob("frame.0*"))])
    return {"kind": kind, "frame": frame, "peak_mib": peak / 2**20, "load": load, **phases}


def largest_difference(want: pl.DataFrame, got: pl.DataFrame) -> str:
    """The column whose values differ most (relative, nulls must agree), or 'identical'."""
    if got.equals(want):
        return "identical"
    worst, name = 0.0, ""
    for col in want.columns:
        if col not in got.columns:
            return f"{col} missing"
        a, b = want[col].cast(pl.Float64).to_numpy(), got[col].cast(pl.Float64).to_numpy()
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            return f"{col}: nulls differ in {int((np.isnan(a) != np.isnan(b)).sum())} rows"
        ok = ~np.isnan(a)
        rel = float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), 1e-300), initial=0.0))
        if rel > worst:
            worst, name = rel, col
    return f"max relative difference {worst:.1e} ({name})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--lake")
    ap.add_argument("--pool")
    ap.add_argument("--out")
    ap.add_argument("--cutoff", default="global")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--kinds", default="before,duckdb,spark")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results_ranker_frames.md"))
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.lake, args.pool, args.cutoff, args.out)
        return
    from bench_engine_item_index import make_lake

    lines = [
        "| events | cut-off | pool rows (users) | run | wall s | of which | peak RSS MiB | against duckdb | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="bench_ranker_frames_") as tmp:
            lake = os.path.join(tmp, "lake")
            data = make_lake(n, lake)
            pool_path = os.path.join(tmp, "pool.parquet")
            data |= make_pool(lake, n, pool_path)
            print(f"{n:,} events: {data}", flush=True)
            runs = [measure(kind, lake, pool_path, args.cutoff, tmp) for kind in args.kinds.split(",")]
            reference = {r["kind"]: r for r in runs}.get("duckdb")
            for run in runs:
                versus = "–" if reference is None or run is reference else largest_difference(reference["frame"], run["frame"])
                detail = ", ".join(f"{k[:-2]} {v}" for k, v in run.items() if k.endswith("_s") and k != "total_s")
                row = (
                    f"| {data['events']:,} | {args.cutoff} | {data['pool_rows']:,} ({data['pool_users']:,}) | {run['kind']} "
                    f"| {run['total_s']:.1f} | {detail} | {run['peak_mib']:,.0f} | {versus} "
                    f"| {run['load'][0]:.1f} → {run['load'][1]:.1f} |"
                )
                print(row, flush=True)
                lines.append(row)
    Path(args.results).write_text(
        "## The rankers' frames at scale (bench/bench_ranker_frames.py)\n\n"
        f"`python bench/bench_ranker_frames.py --sizes {args.sizes} --cutoff {args.cutoff}`, {dt.date.today().isoformat()}, "
        f"{os.cpu_count()} cores. before = iter_ranker_frames as of commit {BEFORE} (polars, numpy prefix counts, scipy); "
        "duckdb and spark run sql/features/ranker_history.sql through resources.ranker_frames.fold_frames. The valid "
        f"fold's frame: at most {USERS:,} users x ({POPULAR} popular + {RANDOM} random) candidates, labels from the valid "
        "fold, blocks of 20,000 users.\n\n" + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
