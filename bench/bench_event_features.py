"""OutRank's input rows (event_features) at scale: the statement sql/features/outrank_rows.sql on DuckDB and on
Spark local mode, beside the polars/numpy implementation it replaced (issues 10 and 14).

    python bench/bench_event_features.py                      # 1M and 10M events
    python bench/bench_event_features.py --sizes 1000000      # one size

Data: the synthetic log (recsys.synthetic: Taobao event types, Zipf items, categories) of N events, train = its
first 20 of 30 days, written once as the lake's staging.split day-partitions (bench_engine_item_index.make_lake).
The label window is the last 10% of train's events; 10 negatives per positive; no row budget (max_rows None),
so every user with a positive is built: the cost of the whole input, not of the 2M-row sample the asset keeps.

Runs, each in a fresh subprocess (peak RSS: the subprocess and its children, sampled every 0.1 s):
- ``before``: ``outrank_rows`` as of commit cac0267 (polars joins + numpy ``Generator.choice`` with redraw rounds,
  the train fold read into memory), loaded from git, so the comparison is reproducible;
- ``duckdb``: the statement in an in-memory DuckDB over the Parquet files (2 threads);
- ``spark``: the statement on Spark local[2] through SqlEngine.query_beside, as the asset runs it (the result
  written to the lake and read back; session start timed apart).
Both statement runs end in recsys.event_features.finish_outrank_rows (order, attributes), as the asset does.
The samplers differ (numpy's RNG against the hash), so the negatives differ; the positives must be the same set.
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

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

BEFORE = "cac0267"  # the last commit with the polars/numpy outrank_rows
NEGATIVES = 10


def _catalogues(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    from recsys.synthetic import SyntheticConfig, SyntheticReader

    reader = SyntheticReader(SyntheticConfig(n_interactions=n, seed=0))
    items = reader.items()
    users = pl.DataFrame({"user_id": pl.Series([], dtype=pl.Int64)})
    return users, items


def _train(lake: str) -> pl.DataFrame:
    from resources.lake import Lake

    split = pl.read_parquet(Lake(lake).table_files("staging.split"), hive_partitioning=True)
    return split.filter(pl.col("fold") == "train").select("user_id", "item_id", "ts", "seq", "fold")


def worker(kind: str, lake: str, n: int, start: str, out: str) -> None:
    from recsys.event_features import finish_outrank_rows, item_categories, outrank_row_params

    phases = {}
    started = time.monotonic()
    window_start = dt.datetime.fromisoformat(start)
    users, items = _catalogues(n)
    if kind == "before":
        source = subprocess.run(["git", "show", f"{BEFORE}:recsys/event_features.py"], cwd=ROOT, capture_output=True, check=True).stdout
        path = Path(out).with_suffix(".before.py")
        path.write_bytes(source)
        spec = importlib.util.spec_from_file_location("event_features_before", path)
        before = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)
        train = _train(lake).drop("fold")
        phases["read_s"] = time.monotonic() - started
        rows = before.outrank_rows(train, users, items, window_start, NEGATIVES, seed=0, max_rows=None)
    else:
        from resources.engine import SqlEngine

        params = outrank_row_params(window_start, NEGATIVES, seed=0, max_rows=None)
        frames = {"features.outrank_item_categories": item_categories(items)}
        if kind == "duckdb":
            import duckdb

            from resources.lake import Lake
            from resources.warehouse import load_sql

            with duckdb.connect(config={"threads": 2}) as con:
                con.execute("CREATE SCHEMA staging")
                con.execute("CREATE SCHEMA features")
                files = Lake(lake).table_files("staging.split")
                con.execute("CREATE TABLE staging.split AS SELECT * FROM read_parquet($f, hive_partitioning = true)", {"f": files})
                con.register("_c", frames["features.outrank_item_categories"].to_arrow())
                con.execute("CREATE TABLE features.outrank_item_categories AS SELECT * FROM _c")
                phases["read_s"] = time.monotonic() - started
                raw = con.execute(load_sql("features/outrank_rows"), params).pl()
        else:
            engine = SqlEngine(engine="spark", lake_dir=lake)
            _ = engine.spark
            phases["session_s"] = time.monotonic() - started
            raw = engine.query_beside("features/outrank_rows", params, frames, warehouse=None)  # as the asset runs it
        rows = finish_outrank_rows(raw, users, items)
    phases["total_s"] = time.monotonic() - started
    rows.select("user_id_raw", "item_id_raw", "label").write_parquet(out)
    Path(out + ".json").write_text(json.dumps({k: round(v, 2) for k, v in phases.items()}))


def measure(kind: str, lake: str, n: int, start: str, tmp: str) -> dict:
    out = os.path.join(tmp, f"{kind}.parquet")
    from bench_engine_item_index import run_measured

    cmd = [sys.executable, __file__, "--worker", kind, "--lake", lake, "--n", str(n), "--start", start, "--out", out]
    peak, load = run_measured(kind, cmd)
    phases = json.loads(Path(out + ".json").read_text())
    return {"kind": kind, "rows": pl.read_parquet(out), "peak_mib": peak / 2**20, "load": load, **phases}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--lake")
    ap.add_argument("--n", type=int)
    ap.add_argument("--start")
    ap.add_argument("--out")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--kinds", default="before,duckdb,spark")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results_event_features.md"))
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.lake, args.n, args.start, args.out)
        return
    from bench_engine_item_index import make_lake

    from recsys.event_features import label_window_start

    lines = [
        "| events | train events | run | wall s | of which | peak RSS MiB | users | positives | negatives (of wanted) | same positives as before | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="bench_event_features_") as tmp:
            lake = os.path.join(tmp, "lake")
            data = make_lake(n, lake)
            start = label_window_start(_train(lake), window_days=None, window_frac=0.1).isoformat()
            print(f"{n:,} events: {data}, label window from {start}", flush=True)
            runs = [measure(kind, lake, n, start, tmp) for kind in args.kinds.split(",")]
            reference = {r["kind"]: r for r in runs}.get("before")
            for run in runs:
                rows = run["rows"]
                positives = rows.filter(pl.col("label") == 1).select("user_id_raw", "item_id_raw")
                negatives = int((rows["label"] == 0).sum())
                same = "–"
                if reference is not None:
                    want = reference["rows"].filter(pl.col("label") == 1).select("user_id_raw", "item_id_raw")
                    same = str(positives.sort(pl.all()).equals(want.sort(pl.all())))
                detail = ", ".join(f"{k[:-2]} {v}" for k, v in run.items() if k.endswith("_s") and k != "total_s")
                row = (
                    f"| {data['events']:,} | {data['train_events']:,} | {run['kind']} | {run['total_s']:.1f} | {detail} "
                    f"| {run['peak_mib']:,.0f} | {rows['user_id_raw'].n_unique():,} | {positives.height:,} "
                    f"| {negatives:,} ({negatives / max(NEGATIVES * positives.height, 1):.3f}) | {same} "
                    f"| {run['load'][0]:.1f} → {run['load'][1]:.1f} |"
                )
                print(row, flush=True)
                lines.append(row)
    Path(args.results).write_text(
        "## OutRank's input rows at scale (bench/bench_event_features.py)\n\n"
        f"`python bench/bench_event_features.py --sizes {args.sizes}`, {dt.date.today().isoformat()}, "
        f"{os.cpu_count()} cores. before = outrank_rows as of commit {BEFORE} (polars + numpy sampler); duckdb and spark run "
        "sql/features/outrank_rows.sql, then finish_outrank_rows. No row budget; 10 negatives per positive.\n\n" + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
