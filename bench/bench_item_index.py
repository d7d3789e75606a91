"""Item-to-item index build: recsys co-occurrence (cosine) vs implicit's CosineRecommender.

    python bench/bench_item_index.py                       # 10M side by side + our largest size
    python bench/bench_item_index.py --sizes 10000000 --big 0

Data: a Taobao-shaped sparse user × item matrix generated here with numpy: item popularity Zipf
(p_i ∝ (i + 10)^-1.0 over 200k items), user activity lognormal (σ = 1.2) scaled to the requested
number of interactions over 1M users (10M) or proportionally more users (larger sizes); duplicate
(user, item) cells are summed, so the CSR holds slightly fewer distinct cells than interactions.
Both libraries get the SAME binary CSR and the same neighbour count K. Ours runs the core
(`cooc_from_baskets`: every user is one basket, unit weights, cosine) plus the raw-count product it
keeps for PI2I's cross features; implicit computes cosine neighbours only (C++, all cores).
Each measurement runs in a fresh subprocess; wall time covers the index build only (data
generation is timed separately), peak RSS comes from os.wait4 on that child (ru_maxrss) and
includes the generated data. Neighbour agreement: share of implicit's top-K (self excluded) that
our top-K holds, over 2,000 sampled items.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_ITEMS = 200_000


def make_matrix(n_interactions: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    n_users = max(1_000, n_interactions // 10)
    activity = rng.lognormal(0.0, 1.2, n_users)
    per_user = np.maximum(1, np.round(activity / activity.sum() * n_interactions)).astype(np.int64)
    total = int(per_user.sum())
    cdf = np.cumsum(1.0 / (np.arange(N_ITEMS) + 10.0))
    cdf /= cdf[-1]
    # Shuffle popularity ranks so popular items are not adjacent positions.
    perm = rng.permutation(N_ITEMS).astype(np.int32)
    users = np.repeat(np.arange(n_users, dtype=np.int32), per_user)
    items = np.empty(total, np.int32)
    chunk = 20_000_000
    for a in range(0, total, chunk):
        b = min(total, a + chunk)
        items[a:b] = perm[np.searchsorted(cdf, rng.random(b - a))]
    m = sp.csr_matrix((np.ones(total, np.float32), (users, items)), shape=(n_users, N_ITEMS))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def worker(kind: str, n: int, k: int, out: str) -> None:
    t0 = time.perf_counter()
    m = make_matrix(n)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if kind == "ours":
        from recsys.channels.itemcf import cooc_from_baskets

        index = cooc_from_baskets(m, None, k, normalize="cosine")
        targets = index.targets
    else:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from implicit.nearest_neighbours import CosineRecommender

        model = CosineRecommender(K=k + 1)  # implicit keeps the item itself among its K
        model.fit(m, show_progress=False)
        sim = model.similarity.tocsr()
        sim.setdiag(0)
        sim.eliminate_zeros()
        from recsys.channels.itemcf import topk_sparse

        coo = sim.tocoo()
        targets, _, _ = topk_sparse(coo.row, coo.col, coo.data.astype(np.float32), sim.shape[0], k)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    sample = rng.choice(m.shape[1], 2000, replace=False)
    np.save(out, targets[sample])
    print(json.dumps({"gen_s": gen_s, "build_s": build_s, "nnz": int(m.nnz), "users": int(m.shape[0])}))


def measure(kind: str, n: int, k: int, tmp: str) -> dict:
    out = os.path.join(tmp, f"{kind}_{n}.npy")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", kind, "--n", str(n), "--k", str(k), "--out", out], stdout=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    text = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"kind": kind, "n": n, "error": f"exit {proc.returncode}", "peak_rss_gib": usage.ru_maxrss / 2**20}
    res = json.loads(text.strip().splitlines()[-1])
    res |= {"kind": kind, "n": n, "k": k, "peak_rss_gib": usage.ru_maxrss / 2**20, "targets": out}
    return res


def agreement(ours: str, theirs: str) -> float:
    a, b = np.load(ours), np.load(theirs)
    hits = total = 0
    for ra, rb in zip(a, b):  # 2,000 rows of a result check, not a hot path
        rb = rb[rb >= 0]
        hits += len(np.intersect1d(ra[ra >= 0], rb))
        total += len(rb)
    return hits / max(total, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--out")
    ap.add_argument("--sizes", default="10000000")
    ap.add_argument("--big", type=int, default=100_000_000, help="our index alone at this size (0 = skip)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results_item_index.md"))
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.k, args.out)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            ours = measure("ours", n, args.k, tmp)
            theirs = measure("implicit", n, args.k, tmp)
            agree = agreement(ours["targets"], theirs["targets"]) if "error" not in ours | theirs else float("nan")
            for r in (ours, theirs):
                r["agreement"] = agree
                rows.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "targets"}), flush=True)
        if args.big:
            r = measure("ours", args.big, args.k, tmp)
            r["agreement"] = float("nan")
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "targets"}), flush=True)
    lines = [
        "## Item-to-item index build (bench/bench_item_index.py)",
        "",
        f"Synthetic Taobao-shaped matrix (Zipf items over {N_ITEMS:,}, lognormal users, see the script), "
        f"K = {args.k} neighbours, cosine; {os.cpu_count()} CPU cores; each run a fresh subprocess.",
        "",
        "| library | interactions | users | distinct cells | build wall s | peak RSS GiB | agreement with implicit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['n']:,} | | | {r['error']} | {r['peak_rss_gib']:.2f} | |")
            continue
        name = "recsys cooc_from_baskets" if r["kind"] == "ours" else "implicit CosineRecommender"
        agree = "" if np.isnan(r["agreement"]) else f"{r['agreement']:.3f}"
        lines.append(f"| {name} | {r['n']:,} | {r['users']:,} | {r['nnz']:,} | {r['build_s']:.1f} | {r['peak_rss_gib']:.2f} | {agree} |")
    Path(args.results).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
