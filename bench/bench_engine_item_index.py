"""The co-occurrence item index on each engine: the C++ builder, sql/index/cooc_neighbours.sql on DuckDB,
and the same statement on Spark local mode (issue 14: the same result, and what it costs).

    python bench/bench_engine_item_index.py                       # 1M and 10M events
    python bench/bench_engine_item_index.py --sizes 1000000       # one size

Data: the synthetic log (recsys.synthetic: sessions, Taobao event types, Zipf items) of N events, train
= its first 20 of 30 days, so the index is built on about two thirds of N. The log is written once as
the lake's staging.split day-partitions (Parquet, resources/lake.py); every run reads it from there.

Runs, each in a fresh subprocess (``--worker``), depth 50, the builder's defaults (24 h pseudo-sessions,
200 items per user, log user weights, cosine):
- ``builder``: recsys.channels.item_index.build_cooc_index(exact_ties=True) on the train history (polars
  read of the Parquet + the sparse_dot_topn C++ top-n product, both cores; ties at the depth cut
  decided by the index's order, as the statement decides them), neighbours written out;
- ``duckdb``: the statement in an in-memory DuckDB over the Parquet files (DuckDB's threads = 2);
- ``spark``: the statement on Spark local[2] through SqlEngine (the transpiled SQL over the lake);
  the session start is timed apart from the query.
Wall time is the whole subprocess minus interpreter start-up (reported per phase); peak RSS is the
largest sum of RSS over the subprocess and its children (Spark's JVM is a child), sampled every 0.1 s.
Agreement: share of items whose 50 neighbours are the builder's, in the same order (near ties in
float32 excepted, see tests/resources/test_engine_item_index.py), and the mean overlap of the lists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SQL = "index/cooc_neighbours"
DEPTH = 50
PARAMS = {"depth": DEPTH, "with_valid": False, "window_us": 86_400_000_000, "max_items": 200}
COLUMNS = ["user_id", "item_id", "event_type", "value", "ts", "event_date", "session_id", "source", "seq", "fold"]


def make_lake(n: int, lake: str) -> dict:
    from recsys.synthetic import SyntheticConfig, SyntheticReader
    from resources.lake import Lake

    started = time.monotonic()
    cfg = SyntheticConfig(n_interactions=n, seed=0)
    log = SyntheticReader(cfg).read_window(cfg.start, cfg.start + dt.timedelta(days=cfg.n_days - 1)).interactions
    valid_from, test_from = cfg.start + dt.timedelta(days=20), cfg.start + dt.timedelta(days=25)
    fold = pl.when(pl.col("event_date") < valid_from).then(pl.lit("train"))
    fold = fold.when(pl.col("event_date") < test_from).then(pl.lit("valid")).otherwise(pl.lit("test"))
    split = log.with_columns(fold.alias("fold")).select(COLUMNS)
    days = sorted({d.isoformat() for d in split["event_date"].unique().to_list()})
    Lake(lake).write_days("staging.split", split, days)
    train = split.filter(pl.col("fold") == "train")
    return {
        "events": split.height,
        "train_events": train.height,
        "users": train["user_id"].n_unique(),
        "items": train["item_id"].n_unique(),
        "generate_s": round(time.monotonic() - started, 1),
    }


def worker(kind: str, lake: str, out: str) -> None:
    from resources.lake import Lake

    phases = {}
    started = time.monotonic()
    files = Lake(lake).table_files("staging.split")
    if kind == "builder":
        from recsys.channels.item_index import build_cooc_index

        split = pl.read_parquet(files, hive_partitioning=True)
        history = split.filter(pl.col("fold") == "train").sort("ts", "seq", nulls_last=False)
        phases["read_s"] = time.monotonic() - started
        index = build_cooc_index(history, DEPTH, exact_ties=True)  # ties at the cut by the index's order, as SQL
        neighbours = index.neighbours()
    elif kind == "duckdb":
        import duckdb

        from resources.warehouse import load_sql

        with duckdb.connect(config={"threads": 2}) as con:
            con.execute("CREATE SCHEMA staging")
            con.execute("CREATE TABLE staging.split AS SELECT * FROM read_parquet($f, hive_partitioning = true)", {"f": files})
            phases["read_s"] = time.monotonic() - started
            neighbours = con.execute(load_sql(SQL), PARAMS).pl()
    else:
        from resources.engine import SqlEngine

        engine = SqlEngine(engine="spark", lake_dir=lake)
        _ = engine.spark  # the session (and its JVM) start
        phases["session_s"] = time.monotonic() - started
        neighbours = pl.from_arrow(engine.spark_query(SQL, PARAMS).toArrow())
    phases["total_s"] = time.monotonic() - started
    neighbours.select("item_id", "neighbour_id", "score", "count", "rank").write_parquet(out)
    Path(out + ".json").write_text(json.dumps({k: round(v, 2) for k, v in phases.items()}))


def run_measured(kind: str, cmd: list[str]) -> tuple[int, tuple[float, float]]:
    """Runs ``cmd`` from the repository root; (peak RSS in bytes of the process and its children, sampled
    every 0.1 s; the 1-minute load average before and after). A failed worker stops the bench, named."""
    proc = subprocess.Popen(cmd, cwd=ROOT)
    parent, peak = psutil.Process(proc.pid), 0
    load_before = os.getloadavg()[0]
    while proc.poll() is None:
        try:
            rss = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    if proc.returncode:
        raise SystemExit(f"{kind} worker failed with exit code {proc.returncode}")
    return peak, (load_before, os.getloadavg()[0])


def measure(kind: str, lake: str, tmp: str) -> dict:
    out = os.path.join(tmp, f"{kind}.parquet")
    peak, load = run_measured(kind, [sys.executable, __file__, "--worker", kind, "--lake", lake, "--out", out])
    phases = json.loads(Path(out + ".json").read_text())
    return {"kind": kind, "out": out, "peak_mib": peak / 2**20, "load": load, **phases}


def agreement(want_path: str, got_path: str) -> tuple[float, float]:
    """(share of items with the same list in the same order, mean |want ∩ got| / |want|)."""
    lists = {}
    for name, path in (("want", want_path), ("got", got_path)):
        frame = pl.read_parquet(path).sort("item_id", "rank").group_by("item_id", maintain_order=True).agg("neighbour_id")
        lists[name] = dict(frame.iter_rows())
    same = overlap = 0
    for item, want in lists["want"].items():
        got = lists["got"].get(item, [])
        same += want == got
        overlap += len(set(want) & set(got)) / len(want)
    n = max(len(lists["want"]), 1)
    return same / n, overlap / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--lake")
    ap.add_argument("--out")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results_engine_item_index.md"))
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.lake, args.out)
        return
    lines = [
        "| events | train events | users | items | run | wall s | of which | peak RSS MiB | identical lists | mean overlap | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="bench_engine_index_") as tmp:
            lake = os.path.join(tmp, "lake")
            data = make_lake(n, lake)
            print(f"{n:,} events: {data}", flush=True)
            runs = [measure(kind, lake, tmp) for kind in ("builder", "duckdb", "spark")]
            for run in runs:
                same, overlap = agreement(runs[0]["out"], run["out"]) if run["kind"] != "builder" else (1.0, 1.0)
                detail = ", ".join(f"{k[:-2]} {v}" for k, v in run.items() if k.endswith("_s") and k != "total_s")
                row = (
                    f"| {data['events']:,} | {data['train_events']:,} | {data['users']:,} | {data['items']:,} | {run['kind']} "
                    f"| {run['total_s']:.1f} | {detail} | {run['peak_mib']:,.0f} | {same:.4f} | {overlap:.4f} "
                    f"| {run['load'][0]:.1f} → {run['load'][1]:.1f} |"
                )
                print(row, flush=True)
                lines.append(row)
    Path(args.results).write_text(
        "## The co-occurrence index on each engine (bench/bench_engine_item_index.py)\n\n"
        f"`python bench/bench_engine_item_index.py --sizes {args.sizes}`, {dt.date.today().isoformat()}, "
        f"{os.cpu_count()} cores. Builder = build_cooc_index (C++ top-n product); duckdb and spark run "
        "sql/index/cooc_neighbours.sql. Agreement is against the builder.\n\n" + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
