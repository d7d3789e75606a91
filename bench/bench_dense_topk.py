"""Dense top-k (issue 10): the old argpartition top-k and dense pop/tgh scoring against the new ones, side by side.

Usage::

    python bench/bench_dense_topk.py                          # writes bench/results_dense_topk.md (~5 min)
    python bench/bench_dense_topk.py --sizes 200000 --blocks 1

Part 1, ``topk_rows`` (recsys/channels/base.py) on random 2,048 x 66,000 float32 blocks with ties (scores
= integers in [0, 2000) / 2000, so ~33 items share each value; 5 % of cells masked -inf), k = 200:
``old`` = the previous implementation (np.argpartition, then a stable argsort of the k picks: which of
several items tied at the k-th score get in, and their order, is whatever argpartition leaves), ``new``
= torch.topk + tie-fix pass (used for blocks of >= 2^24 cells, or once torch is imported) and the same tie rule with the
np.argpartition kernel. Median of --blocks blocks; ``rows != old`` counts rows whose list differs from
the old one (ties only: every new list is checked against a full lexsort by (-score, column)).

Part 2, ``recommend()`` of PopularityChannel (cutoff="global", items with categories) and
TransitionGraphChannel on synthetic logs (recsys/synthetic.py; cached as parquet under --cache): fit on
every day but the last, recommend k = 200 for every user of the log (users first seen on the last day
get the popularity fallback). One child process per (size, channel, variant), peak RSS = os.wait4
ru_maxrss of the child (Python, polars, torch and the events frame included; RSS after fit reported too):

* ``old``   -- dense users x catalogue blocks (``dense=True``) with the old argpartition top-k;
* ``dense`` -- dense blocks with the new top-k (the reference the sparse path must equal);
* ``new``   -- the sparse candidate path (the default).

``lists != old`` = users whose list (items, order) differs from old's; ``new == dense`` = the sparse
output equals the dense one row for row (item, score, rank).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.channels import base  # noqa: E402

K = 200


def topk_rows_argpartition(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """topk_rows as it was before issue 10 (argpartition's tie order), kept here for the comparison."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None and exclude.nnz:
        r, c = exclude.nonzero()
        scores[r, c] = -np.inf
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    if k <= 0:
        return np.empty((n_rows, 0), np.int32), np.empty((n_rows, 0), np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int32)
    val = np.take_along_axis(part_scores, order, axis=1)
    idx[~np.isfinite(val)] = -1
    return idx, val


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bench_topk(n_blocks: int, log) -> list[dict]:
    rng = np.random.default_rng(0)
    variants = {"old (argpartition)": None, "new (torch.topk + tie fix)": 1 << 20, "new (argpartition + tie fix)": 1 << 62}
    default = base.TORCH_TOPK_MIN_SIZE
    times = {v: [] for v in variants}
    differ, checked = 0, 0
    import torch  # noqa: F401  (imported once up front, so no variant pays the import)

    for b in range(n_blocks):
        x = (rng.integers(0, 2000, size=(2048, 66_000)) / 2000).astype(np.float32)
        x[rng.random(x.shape) < 0.05] = -np.inf
        out = {}
        for name, threshold in variants.items():
            started = time.perf_counter()
            if threshold is None:
                out[name] = topk_rows_argpartition(x, K)
            else:
                base.TORCH_TOPK_MIN_SIZE = threshold
                out[name] = base.topk_rows(x, K)
            times[name].append(time.perf_counter() - started)
        base.TORCH_TOPK_MIN_SIZE = default
        new_idx = out["new (torch.topk + tie fix)"][0]
        assert np.array_equal(new_idx, out["new (argpartition + tie fix)"][0]), "kernels disagree"
        rows = rng.choice(len(x), 64, replace=False)  # the tie rule, against a full sort
        ref = np.lexsort((np.broadcast_to(np.arange(x.shape[1]), (len(rows), x.shape[1])), -x[rows]), axis=-1)[:, :K]
        assert np.array_equal(new_idx[rows], ref), "new top-k breaks the tie rule"
        checked += len(rows)
        differ += int((new_idx != out["old (argpartition)"][0]).any(axis=1).sum())
        log(f"block {b}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()))
    return [
        {
            "variant": name,
            "median s per block": round(float(np.median(t)), 3),
            "rows != old": "-" if name.startswith("old") else f"{differ:,} / {2048 * n_blocks:,}",
        }
        for name, t in times.items()
    ] + [{"variant": f"(tie rule checked on {checked} rows against a full lexsort)", "median s per block": "", "rows != old": ""}]


def synthetic(n: int, cache: Path, log) -> tuple[Path, Path]:
    events_path, items_path = cache / f"synthetic_{n}.parquet", cache / f"synthetic_{n}_items.parquet"
    if events_path.exists() and items_path.exists():
        return events_path, items_path
    from recsys.synthetic import SyntheticConfig, SyntheticWorld, generate_day

    started = time.perf_counter()
    config = SyntheticConfig(n_interactions=n)
    world = SyntheticWorld.build(config)
    cache.mkdir(parents=True, exist_ok=True)
    world.items().write_parquet(items_path)
    if not events_path.exists():
        days = [generate_day(world, config.start + timedelta(days=d)) for d in range(config.n_days)]
        pl.concat(days).sort("ts", "seq").write_parquet(events_path)
    log(f"synthetic {n:,}: ready in {time.perf_counter() - started:.1f}s")
    return events_path, items_path


def child(events_path: str, items_path: str, channel: str, variant: str, out: str) -> None:
    from recsys.channels import popularity
    from recsys.channels.popularity import PopularityChannel
    from recsys.channels.tgh import TransitionGraphChannel

    events = pl.read_parquet(events_path)
    items = pl.read_parquet(items_path)
    last_day = events["ts"].max().date()
    history = events.filter(pl.col("ts").dt.date() < last_day)
    users = events["user_id"].unique(maintain_order=True)
    dense = variant != "new"
    if variant == "old":
        popularity.topk_rows = topk_rows_argpartition  # recommend_dense's top-k as it was
    started = time.perf_counter()
    if channel == "pop":
        model = PopularityChannel(dense=dense).fit(history, items=items)
        n_items = len(model.items_)
    else:
        model = TransitionGraphChannel(dense=dense).fit(history)
        n_items = len(model.items_)
    fit_s = time.perf_counter() - started
    rss_fit = rss_gib()
    started = time.perf_counter()
    recs = model.recommend(users, k=K)
    rec_s = time.perf_counter() - started
    recs.write_parquet(out)
    print(
        json.dumps(
            {
                "users": len(users),
                "known users": len(model.users_),
                "items": n_items,
                "fit s": round(fit_s, 2),
                "recommend s": round(rec_s, 2),
                "RSS after fit GiB": round(rss_fit, 3),
            }
        )
    )


def run_child(events_path: Path, items_path: Path, channel: str, variant: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(events_path), str(items_path), channel, variant, str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{cmd} failed ({status})")
    row = json.loads(stdout.strip().splitlines()[-1])
    row["peak RSS GiB"] = round(usage.ru_maxrss / 2**20, 3)  # KiB on Linux
    return row


def lists_differ(a: pl.DataFrame, b: pl.DataFrame) -> int:
    la = a.group_by("user_id").agg(pl.col("item_id").sort_by("rank"))
    lb = b.group_by("user_id").agg(pl.col("item_id").sort_by("rank"))
    j = la.join(lb, on="user_id", how="full", coalesce=True)
    return j.filter(pl.col("item_id").ne_missing(pl.col("item_id_right")))["user_id"].n_unique()


def bench_channels(sizes: list[int], cache: Path, log) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            events_path, items_path = synthetic(n, cache, log)
            for channel in ("pop", "tgh"):
                outs = {}
                for variant in ("old", "dense", "new"):
                    outs[variant] = Path(tmp) / f"{n}_{channel}_{variant}.parquet"
                    row = run_child(events_path, items_path, channel, variant, outs[variant])
                    log(f"{n:,} {channel} {variant}: {row}")
                    rows.append({"events": f"{n:,}", "channel": channel, "variant": variant, **row})
                old, dense, new = (pl.read_parquet(outs[v]) for v in ("old", "dense", "new"))
                same = new.equals(dense)
                assert same, f"{channel} at {n}: sparse path differs from the dense reference"
                for row in rows[-3:]:
                    row["lists != old"] = (
                        "-" if row["variant"] == "old" else f"{lists_differ(old, pl.read_parquet(outs[row['variant']])):,}"
                    )
                    row["new == dense"] = "yes" if same else "NO"
    return rows


def md(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200000,2000000")
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "dense_topk_bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_dense_topk.md")
    ap.add_argument("--child", nargs=5, default=None)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_start = os.getloadavg()
    started = time.perf_counter()
    # channel children first: a child started after the parent has grown would inherit its ru_maxrss
    channels = bench_channels([int(s) for s in args.sizes.split(",")], args.cache, log)
    topk = bench_topk(args.blocks, log)
    topk_rss = rss_gib()
    load_end = os.getloadavg()
    text = [
        "## Dense top-k and sparse pop/tgh candidates (bench/bench_dense_topk.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs; load average "
        f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at end), Python {platform.python_version()}, "
        f"{datetime.now():%Y-%m-%d %H:%M}, {time.perf_counter() - started:.0f} s in all. `python bench/bench_dense_topk.py`.",
        "",
        f"### topk_rows, 2,048 x 66,000 float32 blocks with ties, k = {K} (median of {args.blocks})",
        "",
        "Tie rule of the new top-k: score descending, then dense position ascending (label-free, and the same "
        "whichever kernel picks the candidates). Old: argpartition's order among tied scores. All variants run in "
        f"the bench's own process (peak RSS {topk_rss:.2f} GiB: Python, torch and three copies of a 0.5 GiB block).",
        "",
        md(topk),
        "",
        f"### pop and tgh recommend(), k = {K}, every user of the synthetic log",
        "",
        "Fit on all days but the last; one child process per row (peak RSS = the child's ru_maxrss). "
        "old = dense blocks + argpartition top-k (before issue 10); dense = dense blocks + the new top-k; "
        "new = the sparse candidate path (default). `new == dense`: identical frames (items, scores, ranks); "
        "`lists != old`: users whose list differs from the old one (tied scores only).",
        "",
        md(channels),
        "",
    ]
    args.out.write_text("\n".join(text))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
