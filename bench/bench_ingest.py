"""Ingestion throughput: DuckDB's read_csv vs recdag's source stage vs the full Dagster ingestion.

    python bench/bench_ingest.py                           # 1M and 10M side by side
    python bench/bench_ingest.py --sizes 1000000 --synthetic 1000000
    python bench/bench_ingest.py --profile 1000000         # cProfile of the recdag stages at 1M

Data: a Taobao UserBehavior-format CSV (headerless ``user_id,item_id,category_id,behavior_type,
unix_ts``; pv/cart/fav/buy at 89/6/3/2%, users n/100 with lognormal activity, items n/10 Zipf,
categories 1k, stamps uniform over the 9 UTC days 2017-11-25..12-03, sorted by user then time like
the real file) written with numpy + polars into a temp dir, never committed. The "dirty" file is the
1M file plus 0.3% extra lines with implausible stamps (epoch, 2038, past 2100, negative, millisecond,
non-numeric), interleaved through the file.

Stages, each in a fresh subprocess (wall time of the stage only, imports and data generation
excluded; peak RSS = the child's VmHWM read at its end, so it includes the interpreter and
libraries; not ``ru_maxrss``, which a vfork/exec child inherits from the parent's peak); with
``--repeats 2`` each stage runs twice and the faster run is reported (the machine is shared):

- ``duckdb``: DuckDB's own ``read_csv`` (explicit column types, 2 threads) into a table of a DuckDB
  file: the peer baseline, no validation beyond the types.
- ``source``: ``TaobaoReader`` building its per-day cache (the parse + validate + quarantine pass
  over the file, recsys.sources.lines.DayCache) plus ``read_whole`` (every window: route, finalize,
  sessionize) - what the ingestion asset reads.
- ``ingest``: the full recdag ingestion on a fresh data dir and Dagster home: the source's partition
  bounds (which build the day cache, as ``assets.partitions`` does at import), then the
  ``daily_ingestion`` job (raw_interactions, items, users, interactions and their quality checks,
  GX included) over the whole partition range as one in-process run into the DuckDB warehouse, as
  ``make run`` does. The wall time covers both; the job alone is reported too.

The synthetic source (``synthetic:N``) goes through ``source`` and ``ingest`` the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAY0 = date(2017, 11, 25)
N_DAYS = 9
DIRTY_SHARE = 0.003


def _unix(d: date) -> int:
    return int((datetime(d.year, d.month, d.day) - datetime(1970, 1, 1)).total_seconds())


def make_taobao_csv(path: Path, n: int, seed: int = 0, dirty_share: float = 0.0) -> dict:
    """Write n Taobao-format lines (plus dirty_share * n implausible-stamp lines) to ``path``."""
    import polars as pl

    rng = np.random.default_rng(seed)
    n_users, n_items = max(100, n // 100), max(1_000, n // 10)
    activity = rng.lognormal(0.0, 1.0, n_users)
    users = rng.choice(n_users, n, p=activity / activity.sum()).astype(np.int64) + 1
    cdf = np.cumsum(1.0 / (np.arange(n_items) + 10.0))
    cdf /= cdf[-1]
    items = rng.permutation(n_items)[np.searchsorted(cdf, rng.random(n))].astype(np.int64) + 1
    categories = (items * 2654435761 % 1_000) + 1
    behaviors = np.array(["pv", "cart", "fav", "buy"])[np.searchsorted(np.cumsum([0.89, 0.06, 0.03, 0.02]), rng.random(n) * 0.9999)]
    start = _unix(DAY0)
    ts = rng.integers(start, start + N_DAYS * 86_400, n)
    frame = pl.DataFrame({"u": users, "i": items, "c": categories, "b": behaviors, "t": ts}).sort("u", "t")
    n_dirty = int(round(n * dirty_share))
    if n_dirty:
        stamps = np.array(["0", "86399", "2145916800", "2147483647", "4102444800", "-5", "1511544070000", "abc"])
        bad = pl.DataFrame(
            {
                "u": rng.integers(1, n_users, n_dirty),
                "i": rng.integers(1, n_items, n_dirty),
                "c": rng.integers(1, 1000, n_dirty),
                "b": np.full(n_dirty, "pv"),
                "t": stamps[np.arange(n_dirty) % len(stamps)],
            }
        )
        frame = frame.with_columns(pl.col("t").cast(pl.Utf8))
        pos = np.sort(rng.choice(n + n_dirty, n_dirty, replace=False))
        order = np.ones(n + n_dirty, bool)
        order[pos] = False  # clean rows fill the other positions, in order
        idx = np.empty(n + n_dirty, np.int64)
        idx[order] = np.arange(n)
        idx[~order] = n + np.arange(n_dirty)
        frame = pl.concat([frame, bad]).select(pl.all().gather(idx))
    frame.write_csv(path, include_header=False)
    return {"lines": n + n_dirty, "dirty": n_dirty, "bytes": path.stat().st_size}


# ---------------------------------------------------------------- workers (one per subprocess)


def work_duckdb(csv: Path, tmp: Path) -> dict:
    import duckdb

    db = tmp / "peer.duckdb"
    t0 = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("SET threads = 2")
    con.execute(
        "CREATE TABLE interactions AS SELECT * FROM read_csv($p, header = false, "
        "columns = {'user_id': 'BIGINT', 'item_id': 'BIGINT', 'category_id': 'BIGINT', 'behavior_type': 'VARCHAR', 'ts': 'BIGINT'})",
        {"p": str(csv)},
    )
    rows = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
    con.close()
    return {"wall_s": time.perf_counter() - t0, "rows": rows, "loaded": rows, "quarantined": 0}


def work_source(spec: str, tmp: Path) -> dict:
    from recsys.sources import open_reader
    from recsys.sources.lines import read_whole

    t0 = time.perf_counter()
    reader = open_reader(spec, tmp / "cache")
    t_build = time.perf_counter() - t0
    batch = read_whole(reader)
    wall = time.perf_counter() - t0
    lo, hi = reader.date_bounds()
    return {
        "wall_s": wall,
        "build_s": t_build,
        "windows_s": wall - t_build,
        "rows": batch.n_read,
        "loaded": batch.interactions.height,
        "quarantined": batch.quarantine.height,
        "partitions": (hi - lo).days + 1,
    }


def work_ingest(spec: str, tmp: Path) -> dict:
    data, home = tmp / "data", tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    os.environ.update(RECDAG_DATASET=spec, RECDAG_DATA_DIR=str(data), DAGSTER_HOME=str(home))
    import dagster as dg  # imports before the clock: they are the same for every size

    import resources.datasets  # noqa: F401

    t0 = time.perf_counter()
    from assets.partitions import day_keys  # computes the partition bounds: builds the day cache

    keys = day_keys()
    t_bounds = time.perf_counter() - t0
    from orchestration.definitions import defs
    from orchestration.tags import partition_range_tags

    t_imports = time.perf_counter() - t0 - t_bounds
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("daily_ingestion")
    t1 = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags=partition_range_tags(keys[0], keys[-1]),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    t_job = time.perf_counter() - t1
    wall = time.perf_counter() - t0 - t_imports
    steps = {}
    for ev in result.all_events:
        if ev.event_type_value == "STEP_SUCCESS" or ev.event_type_value == "STEP_FAILURE":
            steps[ev.step_key] = (
                round(ev.event_specific_data.duration_ms / 1000, 2) if hasattr(ev.event_specific_data, "duration_ms") else None
            )
    failed_checks = [
        f"{ev.event_specific_data.asset_key.to_user_string()}.{ev.event_specific_data.check_name}"
        for ev in result.all_events
        if ev.event_type_value == "ASSET_CHECK_EVALUATION" and not ev.event_specific_data.passed
    ]
    import duckdb

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    loaded = con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0]
    quarantined = con.execute("SELECT count(*) FROM quality.quarantine").fetchone()[0]
    try:
        clean = con.execute("SELECT count(*) FROM staging.interactions").fetchone()[0]
    except duckdb.Error:
        clean = None
    con.close()
    return {
        "wall_s": wall,
        "bounds_s": t_bounds,
        "job_s": t_job,
        "success": result.success,
        "rows": loaded + quarantined,
        "loaded": loaded,
        "quarantined": quarantined,
        "clean": clean,
        "partitions": len(keys),
        "steps": steps,
        "failed_checks": failed_checks,
    }


def worker(stage: str, spec: str, tmp: str, out: str, profile: str | None) -> None:
    os.environ.setdefault("POLARS_MAX_THREADS", str(os.cpu_count()))
    tmp_path = Path(tmp)
    fn = {"duckdb": lambda: work_duckdb(Path(spec.partition(":")[2]), tmp_path), "source": lambda: work_source(spec, tmp_path),
          "ingest": lambda: work_ingest(spec, tmp_path)}[stage]  # fmt: skip
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        res = prof.runcall(fn)
        prof.dump_stats(profile)
        with open(profile + ".txt", "w") as fh:
            pstats.Stats(prof, stream=fh).sort_stats("cumulative").print_stats(45)
    else:
        res = fn()
    res["vm_hwm"] = _vm_hwm()
    Path(out).write_text(json.dumps(res))


def _vm_hwm() -> int:
    """This process's peak resident set (bytes). Not ru_maxrss: a child started by vfork/fork + exec
    inherits the parent's high-water mark there, so it would read at least the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(stage: str, spec: str, label: str, tmp_root: Path, profile: str | None = None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"{stage}-", dir=tmp_root))
    out = tmp / "result.json"
    cmd = [sys.executable, __file__, "--worker", stage, "--spec", spec, "--tmp", str(tmp), "--out", str(out)]
    if profile:
        cmd += ["--profile-out", profile]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    res = json.loads(out.read_text()) if code == 0 and out.exists() else {"error": f"exit {code}"}
    rss = res.pop("vm_hwm", usage.ru_maxrss * 1024)  # ru_maxrss is only a fallback (floored at the parent's peak)
    res |= {"stage": stage, "label": label, "spec": spec, "peak_rss": rss, "process_s": elapsed, "load": os.getloadavg()[0]}
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res), flush=True)
    return res


STAGE_NAMES = {
    "duckdb": "(a) DuckDB `read_csv` → table (peer)",
    "source": "(b) recdag source: TaobaoReader day cache + all windows",
    "ingest": "(c) recdag ingestion: bounds + `daily_ingestion` job (Dagster)",
}


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
        return sha + (" (+ uncommitted edits of other files in the tree)" if dirty.strip() else "")
    except OSError:
        return "?"


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| stage | input | lines read | loaded | quarantined | partitions | wall s | rows/s | peak RSS MiB | RSS bytes/row | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = STAGE_NAMES[r["stage"]].replace(
            "TaobaoReader day cache", "reader" if r["spec"].startswith("synthetic") else "TaobaoReader day cache"
        )
        if "error" in r:
            lines.append(f"| {name} | {r['label']} | | | | | {r['error']} | | {r['peak_rss'] / 2**20:,.0f} | | |")
            continue
        notes = []
        if r["stage"] == "source" and "build_s" in r:
            notes.append(f"reader open {r['build_s']:.1f} s + windows {r['windows_s']:.1f} s")
        if r["stage"] == "ingest":
            notes.append(f"bounds/cache {r['bounds_s']:.1f} s + job {r['job_s']:.1f} s")
            if not r["success"]:
                notes.append("**run failed**")
            if r.get("failed_checks"):
                notes.append("failed checks: " + ", ".join(r["failed_checks"]))
        rows_s = r["rows"] / r["wall_s"] if r["wall_s"] else float("nan")
        parts = r.get("partitions", "")
        lines.append(
            f"| {name} | {r['label']} | {r['rows']:,} | {r['loaded']:,} | {r['quarantined']:,} | {parts} | {r['wall_s']:.1f} | "
            f"{rows_s / 1e6:.2f}M | {r['peak_rss'] / 2**20:,.0f} | {r['peak_rss'] / r['rows']:,.0f} | {'; '.join(notes)} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker")
    ap.add_argument("--spec")
    ap.add_argument("--tmp")
    ap.add_argument("--out")
    ap.add_argument("--profile-out")
    ap.add_argument("--sizes", default="1000000,10000000", help="Taobao CSV sizes (lines)")
    ap.add_argument("--synthetic", default="1000000", help="synthetic:N sizes (comma-separated; empty = none)")
    ap.add_argument("--dirty", type=int, default=1_000_000, help="size of the log with 0.3%% implausible stamps (0 = none)")
    ap.add_argument("--stages", default="duckdb,source,ingest")
    ap.add_argument("--repeats", type=int, default=1, help="run each stage this many times, keep the fastest")
    ap.add_argument("--profile", type=int, default=0, help="cProfile the recdag stages on a Taobao CSV of this size, print the top")
    ap.add_argument("--rows-json", default="", help="also write the raw measurements here")
    ap.add_argument("--merge", default="", help="comma-separated --rows-json files: only write the results table from them")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results_ingest.md"))
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.spec, args.tmp, args.out, args.profile_out)
        return
    if args.merge:  # assemble the table from earlier --rows-json files (e.g. 1M now, 10M later)
        saved = [json.loads(Path(f).read_text()) for f in args.merge.split(",")]
        rows = [r for d in saved for r in d["rows"]]
        write_results(rows, [g for d in saved for g in d["gen"]], Path(args.results), max(d["repeats"] for d in saved))
        return
    stages = [s for s in args.stages.split(",") if s]
    rows: list[dict] = []
    base = Path(tempfile.mkdtemp(prefix="recdag-bench-ingest-"))
    try:
        if args.profile:
            csv = base / f"taobao_{args.profile}.csv"
            make_taobao_csv(csv, args.profile)
            for stage in ("source", "ingest"):
                prof = str(base / f"profile_{stage}.pstats")
                measure(stage, f"taobao:{csv}", f"Taobao {args.profile:,}", base, profile=prof)
                print(Path(prof + ".txt").read_text())
            return
        inputs: list[tuple[str, str, bool]] = []  # (spec, label, duckdb applies)
        gen = []
        for n in [int(s) for s in args.sizes.split(",") if s]:
            csv = base / f"taobao_{n}.csv"
            t0 = time.perf_counter()
            info = make_taobao_csv(csv, n)
            gen.append(f"{n:,} lines ({info['bytes'] / 2**20:,.0f} MiB) generated in {time.perf_counter() - t0:.1f} s")
            inputs.append((f"taobao:{csv}", f"Taobao {n:,}", True))
            if n == args.dirty:
                dcsv = base / f"taobao_{n}_dirty.csv"
                info = make_taobao_csv(dcsv, n, dirty_share=DIRTY_SHARE)
                inputs.append((f"taobao:{dcsv}", f"Taobao {n:,} + {info['dirty']:,} implausible stamps", False))
        for n in [int(s) for s in args.synthetic.split(",") if s]:
            inputs.append((f"synthetic:{n}", f"synthetic:{n}", False))
        for spec, label, peer in inputs:
            for stage in stages:
                if stage == "duckdb" and not peer:
                    continue
                runs = [measure(stage, spec, label, base) for _ in range(args.repeats)]
                ok = [r for r in runs if "error" not in r] or runs
                rows.append(min(ok, key=lambda r: r.get("wall_s", 0.0)))
                if stage == "duckdb":
                    rows[-1]["partitions"] = ""
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.rows_json:
        Path(args.rows_json).write_text(json.dumps({"gen": gen, "repeats": args.repeats, "rows": rows}, indent=1))
    write_results(rows, gen, Path(args.results), args.repeats)


def write_results(rows: list[dict], gen: list[str], path: Path, repeats: int) -> None:
    import duckdb
    import polars as pl

    lines = [
        "## Ingestion throughput (bench/bench_ingest.py)",
        "",
        f"Taobao UserBehavior-format CSV generated in the script ({'; '.join(gen)}), 9 UTC days; each stage in a fresh "
        f"subprocess, wall time of the stage only{f' (the faster of {repeats} runs)' if repeats > 1 else ' (one run each)'}, peak RSS of that process (its VmHWM: "
        f"interpreter and libraries included). {os.cpu_count()} CPU cores shared with other jobs (1-min load average during the runs: "
        f"{min(r['load'] for r in rows):.1f}-{max(r['load'] for r in rows):.1f}); polars {pl.__version__}, duckdb {duckdb.__version__}; "
        f"commit {commit()}.",
        "",
        *table(rows),
    ]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
