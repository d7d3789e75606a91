"""The channel search's event budget (ChannelConfig.max_search_events, recsys.channels.search.search_history):
what the ALS grid costs on a large log with every setting fitted on the whole train history, against the
default budget (settings fitted on a seeded sample of whole users, the choice refit once on all of train).

Usage::

    python bench/bench_search_budget.py                       # 2M synthetic events, writes bench/results_search_budget.md
    python bench/bench_search_budget.py --events 200000 --budget 50000   # a quick look

Protocol: synthetic events (recsys/synthetic.py, cached as parquet like bench_ease_large), the temporal split
(recsys.split.temporal_split, 80/10/10 by time); the valid fold as the asset sees it: history = train, target =
valid, scored users = a seeded sample of ``--users`` valid users with train history (as ``max_search_users``).
One child process per mode (peak RSS = the child's ru_maxrss from os.wait4): the grid of ``candidates_als``
(ALSConfig: factors 32/64/128 × regularization 0.01/0.05/0.2), then the model the asset would serve for the
valid fold (the search's own fit when nothing was sampled, else the chosen setting refit on the whole train
history), and that model's NDCG@10 on the scored users (full ranking, seen excluded). Both modes score the
same users, so the served NDCG@10 values compare directly, with a paired standard error of their difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.candidates import ALSConfig, ChannelConfig  # noqa: E402
from bench.bench_ease_large import md, synthetic_events  # noqa: E402
from recsys.channels.als import ALSChannel  # noqa: E402
from recsys.channels.search import expand_grid, per_user_ndcg, run_search, search_history  # noqa: E402
from recsys.metrics.sampling import sample_in_event_order  # noqa: E402
from recsys.split import temporal_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def valid_fold(path: str, n_users: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    split = temporal_split(pl.read_parquet(path))
    history, target = split.train, split.valid
    warm = target.select("user_id").unique().join(history.select("user_id").unique(), on="user_id", how="semi")["user_id"].sort()
    users, _ = sample_in_event_order(warm, target, n_users, seed=0)
    return history, target, users


def child(path: str, budget: int, n_users: int, out: str) -> None:
    started = time.perf_counter()
    history, target, users = valid_fold(path, n_users)
    load_s = time.perf_counter() - started
    config = ALSConfig()
    grid = {"factors": config.factors_grid, "regularization": config.regularization_grid}
    started = time.perf_counter()
    fit_on, info = search_history(history, users, budget)
    result = run_search(lambda p: ALSChannel(**p), grid, fit_on, target, users, 10)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    served = result.best_channel if not info.sampled else ALSChannel(**result.best_params).fit(history)
    refit_s = time.perf_counter() - started
    values = per_user_ndcg(served.recommend(users, k=10, exclude_seen=True), target, users, 10)
    Path(out).write_text(
        json.dumps(
            {
                "budget": budget,
                "train_events": history.height,
                "search_events": info.n_events,
                "search_users_in_fit": info.n_users,
                "scored_users": users.len(),
                "load_s": round(load_s, 1),
                "search_s": round(search_s, 1),
                "refit_s": round(refit_s, 1),
                "chosen": result.best_params,
                "table": result.rows(),
                "served_ndcg": values.tolist(),
            }
        )
    )


def measure(path: Path, budget: int, n_users: int, log) -> dict:
    out = path.with_suffix(f".search_{budget}.json")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(path), "--budget", str(budget), "--users", str(n_users), "--json", str(out)]
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"child for budget {budget} failed with status {status}")
    row = json.loads(out.read_text())
    row["wall_s"] = round(time.perf_counter() - started, 1)
    row["peak_rss_mib"] = round(usage.ru_maxrss / 1024)
    log(
        f"budget {budget or 'none'}: search {row['search_s']} s + refit {row['refit_s']} s, chosen {row['chosen']}, peak {row['peak_rss_mib']} MiB"
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--budget", type=int, default=ChannelConfig().max_search_events)
    ap.add_argument("--users", type=int, default=ChannelConfig().max_search_users)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "ease_large_bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_search_budget.md")
    ap.add_argument("--child", type=str, default=None)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.budget, args.users, args.json)
        return

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_start = os.getloadavg()
    path = synthetic_events(args.events, args.cache, log)
    rows = [measure(path, 0, args.users, log), measure(path, args.budget, args.users, log)]
    load_end = os.getloadavg()
    full, sampled = (np.asarray(r["served_ndcg"]) for r in rows)
    diff = sampled - full
    paired_se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    table = pl.DataFrame(
        [
            {
                "search fitted on": "every train event" if r["budget"] == 0 else f"budget {r['budget']:,}",
                "events per fit": f"{r['search_events']:,} of {r['train_events']:,}",
                "settings": len(expand_grid({"f": ALSConfig().factors_grid, "r": ALSConfig().regularization_grid})),
                "search s": r["search_s"],
                "refit on all train s": r["refit_s"],
                "search + refit s": round(r["search_s"] + r["refit_s"], 1),
                "peak RSS MiB": r["peak_rss_mib"],
                "chosen": f"f{r['chosen']['factors']}/r{r['chosen']['regularization']}",
                "served valid NDCG@10": round(float(np.mean(r["served_ndcg"])), 4),
            }
            for r in rows
        ]
    )
    grids = pl.DataFrame(
        [
            {
                "fitted on": "all" if r["budget"] == 0 else "sample",
                **{k: v for k, v in t.items() if k in ("factors", "regularization", "valid_ndcg@10")},
            }
            for r in rows
            for t in r["table"]
        ]
    ).pivot(on="fitted on", index=["factors", "regularization"], values="valid_ndcg@10")
    text = [
        "## Channel search event budget: the ALS grid on a large log (bench/bench_search_budget.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average {load_start[0]:.1f} at start, "
        f"{load_end[0]:.1f} at end), Python {platform.python_version()}, {datetime.now():%Y-%m-%d %H:%M}. "
        f"`python bench/bench_search_budget.py --events {args.events} --budget {args.budget} --users {args.users}`. "
        f"Synthetic {args.events:,} events, temporal split; {rows[0]['scored_users']:,} scored valid users (seeded sample).",
        "",
        md(table),
        "",
        f"Served valid NDCG@10, budget − all events: {float(diff.mean()):+.4f} (paired SE {paired_se:.4f}, same {len(diff):,} users).",
        "",
        "Every setting's valid NDCG@10 (the same scored users), fitted on every train event vs on the sample:",
        "",
        md(grids),
        "",
    ]
    args.out.write_text("\n".join(text))
    log("\n".join(text))


if __name__ == "__main__":
    main()
