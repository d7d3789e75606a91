"""EASE head mode (recsys/channels/ease.py): how quality degrades, and what a large catalogue costs.

Usage::

    python bench/bench_ease_large.py                     # both parts, writes bench/results_ease_large.md
    python bench/bench_ease_large.py --skip-scale        # ML-100K quality only (~1 min)

Part 1, quality (ML-100K, data/sources/ml-100k/ml-100k.inter): rows in file order (= seq), sorted by
(ts, seq); a random 80/20 holdout of interactions (seed 0: each row goes to test with probability 0.2),
test users = those with a test row and a train row; full ranking, seen items excluded, every test
row relevant.  Full EASE against head-mode EASE (``max_items`` = 75 %, 50 %, 25 %, 10 % of the train
catalogue), λ = 250 (the channel's default) for all.

Part 2, cost (synthetic, recsys/synthetic.py, default 2M interactions ≈ 80k items): one child process
per measurement (peak RSS from os.wait4's ru_maxrss): load the events (cached as parquet under
--cache), fit head-mode EASE at the default ``max_items`` and recommend 200 items for 5,000 users.
The child's peak includes Python, polars and the events frame (its RSS after loading is reported too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ml100k import load_interactions  # noqa: E402
from recsys.channels.ease import EASEChannel  # noqa: E402
from recsys.metrics.accuracy import evaluate  # noqa: E402
from recsys.split import relevant  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEAD_SHARES = (1.0, 0.75, 0.5, 0.25, 0.1)


def load_ml100k(path: Path) -> pl.DataFrame:
    return load_interactions(path).sort("ts", "seq")  # seq = file line order


def quality(ml100k: Path, log) -> tuple[pl.DataFrame, dict]:
    inter = load_ml100k(ml100k)
    test_mask = np.random.default_rng(0).random(inter.height) < 0.2
    train, test = inter.filter(pl.Series(~test_mask)), inter.filter(pl.Series(test_mask))
    truth = relevant(test).join(train.select("user_id").unique(), on="user_id", how="semi")
    users = truth["user_id"].unique().sort()
    n_items = train["item_id"].n_unique()
    rows = []
    for share in HEAD_SHARES:
        max_items = n_items if share == 1.0 else int(round(share * n_items))
        started = time.perf_counter()
        channel = EASEChannel(max_items=max_items).fit(train)
        fit_s = time.perf_counter() - started
        recs = channel.recommend(users, k=50, exclude_seen=True)
        m = evaluate(recs, truth, ks=[10, 50], metrics=["ndcg", "recall"])
        value = {(r["metric"], r["k"]): float(r["value"]) for r in m.iter_rows(named=True)}
        head = set(channel.items_.ids.tolist())
        rows.append(
            {
                "mode": channel.mode_,
                "head items": channel.n_head_items_,
                "head share of items": round(channel.n_head_items_ / n_items, 3),
                "train rows on head": round(channel.head_interaction_share_, 4),
                "test rows on head": round(float(truth["item_id"].is_in(list(head)).mean()), 4),
                "NDCG@10": round(value[("ndcg", 10)], 4),
                "Recall@50": round(value[("recall", 50)], 4),
                "fit s": round(fit_s, 2),
            }
        )
        log(f"quality: {rows[-1]}")
    table = pl.DataFrame(rows)
    full = table.row(0, named=True)
    table = table.with_columns(
        (pl.col("NDCG@10") / full["NDCG@10"]).round(3).alias("NDCG@10 / full"),
        (pl.col("Recall@50") / full["Recall@50"]).round(3).alias("Recall@50 / full"),
    )
    info = {"train_rows": train.height, "test_rows": test.height, "users": users.len(), "train_items": n_items, "truth_rows": truth.height}
    return table, info


def synthetic_events(n: int, cache: Path, log) -> Path:
    path = cache / f"synthetic_{n}.parquet"
    if path.exists():
        return path
    from datetime import timedelta

    from recsys.synthetic import SyntheticConfig, SyntheticWorld, generate_day

    started = time.perf_counter()
    config = SyntheticConfig(n_interactions=n)
    world = SyntheticWorld.build(config)
    days = [generate_day(world, config.start + timedelta(days=d)) for d in range(config.n_days)]
    events = pl.concat(days).sort("ts", "seq")
    cache.mkdir(parents=True, exist_ok=True)
    events.write_parquet(path)
    log(f"generated {events.height:,} synthetic events in {time.perf_counter() - started:.1f}s -> {path}")
    return path


def child_fit(path: str, max_items: int, n_users: int) -> None:
    """Run in a child process: print one JSON line with the fit's numbers."""
    events = pl.read_parquet(path)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    channel = EASEChannel(max_items=max_items)
    t0 = time.perf_counter()
    shared = channel._prepare(events)  # head choice, X, Gram: what every λ shares
    t1 = time.perf_counter()
    channel._solve(shared, overwrite=True)  # Cholesky inverse -> B
    t2 = time.perf_counter()
    del shared
    users = events["user_id"].unique(maintain_order=True).head(n_users)
    recs = channel.recommend(users, k=200)
    t3 = time.perf_counter()
    out = {
        **channel.fit_info(),
        "events": events.height,
        "l2": channel.l2,
        "prepare_s": round(t1 - t0, 2),
        "solve_s": round(t2 - t1, 2),
        "fit_s": round(t2 - t0, 2),
        "recommend_s": round(t3 - t2, 2),
        "recommend_users": users.len(),
        "rec_rows": recs.height,
        "rss_after_load_gib": round(rss_loaded, 3),
    }
    print(json.dumps(out), flush=True)


def measure(path: Path, max_items: int, n_users: int, log) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(path), "--max-items", str(max_items), "--users", str(n_users)],
        stdout=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child failed ({status}): {out}")
    row = json.loads(out.strip().splitlines()[-1])
    row["child_wall_s"] = round(wall, 1)
    row["peak_rss_gib"] = round(usage.ru_maxrss / 2**20, 3)  # ru_maxrss is KiB on Linux
    log(f"scale: {row}")
    return row


def md(frame: pl.DataFrame) -> str:
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ml100k", type=Path, default=ROOT / "data" / "sources" / "ml-100k")
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--max-items", type=int, default=EASEChannel().max_items)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "ease_large_bench")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_ease_large.md")
    ap.add_argument("--child", type=str, default=None)
    args = ap.parse_args()
    if args.child:
        child_fit(args.child, args.max_items, args.users)
        return

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_start = os.getloadavg()
    table, info = quality(args.ml100k, log)
    scale = None
    if not args.skip_scale:
        scale = measure(synthetic_events(args.events, args.cache, log), args.max_items, args.users, log)
    load_end = os.getloadavg()

    text = [
        "## EASE on large catalogues: head mode (bench/bench_ease_large.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs; load average "
        f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at end), Python {platform.python_version()}, "
        f"{datetime.now():%Y-%m-%d %H:%M}. `python bench/bench_ease_large.py`.",
        "",
        "### Quality: ML-100K, full EASE vs head mode",
        "",
        f"Random 80/20 holdout of interactions (seed 0): {info['train_rows']:,} train rows, {info['train_items']:,} train "
        f"items; {info['users']:,} test users with {info['truth_rows']:,} relevant test rows; full ranking, seen items "
        "excluded, λ = 250 for all rows. Head = the `max_items` train items with the most train rows. "
        "`test rows on head` is the Recall ceiling of EASE alone in head mode (the rest is left to other channels).",
        "",
        md(table),
        "",
    ]
    if scale is not None:
        text += [
            f"### Cost: synthetic {scale['events']:,} events, head mode at the default max_items = {scale['max_items']:,}",
            "",
            "One child process (peak RSS = os.wait4 ru_maxrss of the child, Python + polars + the events frame included). "
            "`prepare` = head choice + restricted X + Gram (shared by every λ of the search); `solve` = the Cholesky "
            f"inverse for one λ ({scale['l2']}); recommend = top-200 for {scale['recommend_users']:,} users.",
            "",
            "| catalogue items | head items | train rows on head | users known to EASE | prepare s | solve s | fit s | "
            "recommend s | RSS after load GiB | peak RSS GiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {scale['n_items']:,} | {scale['n_head_items']:,} | {scale['head_interaction_share']:.4f} | {scale['n_users']:,} | "
            f"{scale['prepare_s']} | {scale['solve_s']} | {scale['fit_s']} | {scale['recommend_s']} | "
            f"{scale['rss_after_load_gib']} | {scale['peak_rss_gib']} |",
            "",
            f"Full EASE on all {scale['n_items']:,} items would need dense n × n float64 matrices of "
            f"{scale['n_items'] ** 2 * 8 / 2**30:.0f} GiB each (about three during a fit) and ~"
            f"{(scale['n_items'] / scale['max_items']) ** 3:.0f}× the solve time above.",
            "",
        ]
    args.out.write_text("\n".join(text))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
