"""Item-to-item index build: recsys co-occurrence (cosine) vs implicit's CosineRecommender.

    python bench/bench_item_index.py                                   # 1M and 10M side by side
    python bench/bench_item_index.py --sizes 100000000 --repeat 1      # 100M side by side
    python bench/bench_item_index.py --sizes 10000000 --weighted       # + our general (weighted) path

Data: a Taobao-shaped sparse user × item matrix generated here with numpy: item popularity Zipf
(p_i ∝ (i + 10)^-1.0 over 200k items), user activity lognormal (σ = 1.2) scaled to the requested
number of interactions over 1M users (10M) or proportionally more users (larger sizes); duplicate
(user, item) cells are summed, so the CSR holds slightly fewer distinct cells than interactions.
Both libraries get the SAME binary CSR and the same neighbour count K. Ours runs the core
(`cooc_from_baskets`: every user is one basket, unit weights, cosine; sparse_dot_topn's C++ top-n
product on all cores, raw counts of the kept pairs included, which PI2I reads); implicit computes
cosine neighbours only (C++, all cores). ``--weighted`` adds our general path on the same matrix
with per-basket weights 1/log(1 + n_u) as build_cooc_index gives them (scores then differ from
plain cosine, so no agreement; the raw counts need a second, binary product there).
Each measurement runs in a fresh subprocess, the libraries alternating (``--repeat`` rounds);
wall and CPU time (all threads, user + system) cover the index build only (data generation is
timed separately), peak RSS comes from os.wait4 on that child (ru_maxrss) and includes the
generated data; the 1-minute load average is read before and after each build (the machine is
shared). Neighbour agreement: share of implicit's top-K (self excluded) that our top-K holds, over
2,000 sampled items. The table lands between the bench markers of ``--results``; the rest of that
file (history) is kept.
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
    # Imports stay outside the timed build (polars and friends for ours, implicit's extension).
    from recsys.channels.itemcf import cooc_from_baskets, topk_sparse

    if kind == "implicit":
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from implicit.nearest_neighbours import CosineRecommender
    load0 = os.getloadavg()[0]
    c0, t0 = os.times(), time.perf_counter()
    if kind in ("ours", "ours_weighted"):
        weights = None
        if kind == "ours_weighted":
            weights = 1.0 / np.log1p(np.maximum(np.diff(m.indptr), 1).astype(np.float64))
        index = cooc_from_baskets(m, weights, k, normalize="cosine")
        targets = index.targets
    else:
        model = CosineRecommender(K=k + 1)  # implicit keeps the item itself among its K
        model.fit(m, show_progress=False)
        sim = model.similarity.tocsr()
        sim.setdiag(0)
        sim.eliminate_zeros()
        coo = sim.tocoo()
        targets, _, _ = topk_sparse(coo.row, coo.col, coo.data.astype(np.float32), sim.shape[0], k)
    build_s = time.perf_counter() - t0
    c1 = os.times()
    cpu_s = (c1.user - c0.user) + (c1.system - c0.system)
    rng = np.random.default_rng(1)
    sample = rng.choice(m.shape[1], 2000, replace=False)
    np.save(out, targets[sample])
    res = {"gen_s": gen_s, "build_s": build_s, "cpu_s": cpu_s, "load": [load0, os.getloadavg()[0]]}
    print(json.dumps(res | {"nnz": int(m.nnz), "users": int(m.shape[0])}))


def measure(kind: str, n: int, k: int, tmp: str, rep: int = 0) -> dict:
    out = os.path.join(tmp, f"{kind}_{n}_{rep}.npy")
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


NAMES = {
    "ours": "recsys cooc_from_baskets (sparse_dot_topn)",
    "ours_weighted": "recsys cooc_from_baskets, weighted baskets",
    "implicit": "implicit CosineRecommender",
}
MARK_START, MARK_END = "<!-- bench_item_index:start -->", "<!-- bench_item_index:end -->"


def table(rows: list[dict], k: int) -> list[str]:
    lines = [
        f"Synthetic Taobao-shaped matrix (Zipf items over {N_ITEMS:,}, lognormal users, see the script), "
        f"K = {k} neighbours, cosine; {os.cpu_count()} CPU cores; each build a fresh subprocess.",
        "",
        "| round | library | interactions | users | distinct cells | build wall s | build CPU s | peak RSS GiB "
        "| load avg before/after | agreement with implicit | implicit wall / ours wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['rep']} | {NAMES[r['kind']]} | {r['n']:,} | | | {r['error']} | | {r['peak_rss_gib']:.2f} | | | |")
            continue
        agree = "" if np.isnan(r.get("agreement", float("nan"))) else f"{r['agreement']:.3f}"
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        load = "{:.1f} / {:.1f}".format(*r["load"])
        lines.append(
            f"| {r['rep']} | {NAMES[r['kind']]} | {r['n']:,} | {r['users']:,} | {r['nnz']:,} | {r['build_s']:.1f} "
            f"| {r['cpu_s']:.1f} | {r['peak_rss_gib']:.2f} | {load} | {agree} | {ratio} |"
        )
    return lines


def write_results(path: Path, lines: list[str]) -> None:
    """Replace the block between the markers (or prepend one); the rest of the file is history."""
    block = "\n".join([MARK_START, *lines, MARK_END])
    text = path.read_text() if path.exists() else ""
    if MARK_START in text and MARK_END in text:
        text = text[: text.index(MARK_START)] + block + text[text.index(MARK_END) + len(MARK_END) :]
    else:
        text = block + "\n\n" + text
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--out")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of ours / implicit per size, alternating")
    ap.add_argument("--weighted", action="store_true", help="also our weighted (general) path, once per size")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results_item_index.md"))
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.k, args.out)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            for rep in range(1, args.repeat + 1):
                # Alternate who goes first, so a load change does not favour one library.
                kinds = ("ours", "implicit") if rep % 2 else ("implicit", "ours")
                got = {kind: measure(kind, n, args.k, tmp, rep) for kind in kinds}
                ours, theirs = got["ours"], got["implicit"]
                ok = "error" not in ours and "error" not in theirs
                for r in (ours, theirs):
                    r["rep"] = rep
                    r["agreement"] = agreement(ours["targets"], theirs["targets"]) if ok else float("nan")
                if ok:
                    ours["ratio"] = theirs["build_s"] / ours["build_s"]
                for r in (got[kinds[0]], got[kinds[1]]):
                    rows.append(r)
                    print(json.dumps({k: v for k, v in r.items() if k != "targets"}), flush=True)
            if args.weighted:
                r = measure("ours_weighted", n, args.k, tmp) | {"rep": "w"}
                rows.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "targets"}), flush=True)
    lines = table(rows, args.k)
    write_results(Path(args.results), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
