"""PRS against co-occurrence order on held-out pairs, old PRS training vs new, ML-100K.

    python bench/bench_pi2i_prs.py --folds valid                     # choose settings here
    python bench/bench_pi2i_prs.py --folds test --seeds 0 1 2        # once, at the end
    python bench/bench_pi2i_prs.py --pi2i '{"epochs": 6}' --folds valid --no-legacy

Held-out pairs: per protocol (recsys.split temporal / leave-last-out) and fold, every distinct
(user, item) of the fold's target whose user has history and whose item is new to the user and
inside the relaxed pool (union of the user's trigger lists at depth 300, built by the new PI2I),
so every method ranks the same reachable pairs. Each method recommends its top 50 unseen items
from that pool: co-occurrence order (``pi2i_index``: Σ over triggers of 0.8^r × cooc score), the
old PRS (the code at commit LEGACY_COMMIT: consecutive pairs, per-trigger softmax, max over
triggers at serving) and the new PRS (serving-shaped examples, leave-one-out features, log-sum-exp
pooling over triggers, softmax over the pool). hit@k per pair = the item is in the top k.

Intervals: 95 % percentile bootstrap over pairs (1000 resamples, seed 12345); differences are
paired (the same resampled pairs for both methods). The new PRS runs with every ``--seeds`` seed
(the spread across seeds is reported); the old PRS and the co-occurrence order with seed 0.
"""

from __future__ import annotations

import argparse
import importlib
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

from bench_pi2i_ml100k import USER_FEATURES, load  # noqa: E402

from recsys.pi2i import PI2I, PI2IIndexChannel  # noqa: E402
from recsys.runtime import TorchRuntime  # noqa: E402
from recsys.split import leave_last_out_split, temporal_split  # noqa: E402

LEGACY_COMMIT = "e9197f8"  # the PRS before serving-shaped training (consecutive pairs, max merge)
KS = (10, 50)
N_BOOT, BOOT_SEED = 1000, 12345


def legacy_pi2i():
    """The PI2I class of LEGACY_COMMIT, imported as package ``pi2i_legacy`` from ``git show``."""
    tmp = Path(tempfile.mkdtemp(prefix="pi2i_legacy_"))
    pkg = tmp / "pi2i_legacy"
    pkg.mkdir()
    for name in ("__init__", "features", "index", "model", "serve", "train"):
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{LEGACY_COMMIT}:recsys/pi2i/{name}.py"], capture_output=True, text=True, check=True
        ).stdout
        (pkg / f"{name}.py").write_text(text.replace("recsys.pi2i.", "pi2i_legacy."))
    sys.path.insert(0, str(tmp))
    return importlib.import_module("pi2i_legacy.serve").PI2I


def bootstrap(hits: dict[str, np.ndarray], pairs_of: list[tuple[str, str]]) -> dict:
    rng = np.random.default_rng(BOOT_SEED)
    n = len(next(iter(hits.values())))
    idx = rng.integers(0, n, size=(N_BOOT, n))
    out = {}
    for name, h in hits.items():
        means = h[idx].mean(axis=1)
        out[name] = (float(h.mean()), *np.percentile(means, [2.5, 97.5]).tolist())
    for a, b in pairs_of:
        d = hits[a].astype(np.float64) - hits[b]
        means = d[idx].mean(axis=1)
        out[f"{a} - {b}"] = (float(d.mean()), *np.percentile(means, [2.5, 97.5]).tolist())
    return out


def held_out_pairs(model: PI2I, history: pl.DataFrame, target: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    users = target.select("user_id").unique().join(history.select("user_id").unique(), on="user_id", how="semi")["user_id"].sort()
    truth = target.select("user_id", "item_id").unique().join(history.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
    user_ids, upos = model._user_rows(users)
    r, c, _ = model._candidate_scores(upos, exclude_seen=True)
    pool = pl.DataFrame({"user_id": user_ids[r], "item_id": model.items_.ids[c]})
    return truth.join(pool, on=["user_id", "item_id"], how="semi").sort("user_id", "item_id"), truth.height


def hits_of(recs: pl.DataFrame, pairs: pl.DataFrame, k: int) -> np.ndarray:
    top = recs.filter(pl.col("rank") <= k).select("user_id", "item_id").with_columns(pl.lit(True).alias("hit"))
    return pairs.join(top, on=["user_id", "item_id"], how="left", maintain_order="left")["hit"].fill_null(False).to_numpy()


def run(data: Path, protocols, folds, seeds, params: dict, legacy: bool, log) -> list[dict]:
    inter, items, users = load(data)
    Legacy = legacy_pi2i() if legacy else None
    rows = []
    for protocol in protocols:
        split = temporal_split(inter) if protocol == "temporal" else leave_last_out_split(inter)
        for fold in folds:
            history, target = split.fold(fold)
            recs, times, val = {}, {}, {}
            for seed in seeds:
                t0 = time.perf_counter()
                rt = TorchRuntime(threads=1, seed=seed, log=lambda m: None)
                model = PI2I(**params).fit(history, items=items, users=users, user_features=USER_FEATURES, runtime=rt)
                if seed == seeds[0]:
                    pairs, n_truth = held_out_pairs(model, history, target)
                    eval_users = pairs["user_id"].unique().sort()
                recs[f"new PRS s{seed}"] = model.recommend(eval_users, k=max(KS))
                times[f"new PRS s{seed}"] = round(time.perf_counter() - t0, 1)
                ep = next(e for e in model.report_["epochs"] if e["epoch"] == model.report_["best_epoch"])
                val[f"new PRS s{seed}"] = (ep["val_hit"], ep["cooc_hit"])
                log(f"{protocol}/{fold} new PRS seed {seed}: {times[f'new PRS s{seed}']} s, train-val {val[f'new PRS s{seed}']}")
            recs["cooc order"] = PI2IIndexChannel(depth=params.get("depth", 300)).fit(history, items).recommend(eval_users, k=max(KS))
            if Legacy is not None:
                t0 = time.perf_counter()
                old = Legacy().fit(history, items=items, users=users, user_features=USER_FEATURES, runtime=TorchRuntime(threads=1, seed=0))
                recs["old PRS"] = old.recommend(eval_users, k=max(KS))
                times["old PRS"] = round(time.perf_counter() - t0, 1)
                log(f"{protocol}/{fold} old PRS: {times['old PRS']} s")
            new0 = f"new PRS s{seeds[0]}"
            for k in KS:
                hits = {name: hits_of(r, pairs, k) for name, r in recs.items()}
                compare = [(new0, "cooc order")] + ([("old PRS", "cooc order"), (new0, "old PRS")] if legacy else [])
                stats = bootstrap(hits, compare)
                spread = [float(hits[f"new PRS s{s}"].mean()) for s in seeds]
                row = {
                    "protocol": protocol,
                    "fold": fold,
                    "k": k,
                    "n_pairs": pairs.height,
                    "n_truth": n_truth,
                    "n_users": eval_users.len(),
                    "stats": stats,
                    "new_seeds": spread,
                    "fit_s": times,
                    "train_val": val,
                }
                log(json.dumps(row))
                rows.append(row)
    return rows


def markdown(rows: list[dict], params: dict, seeds, load_avg) -> str:
    f = lambda t: f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"  # noqa: E731
    fd = lambda t: f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"  # noqa: E731
    new0 = f"new PRS s{seeds[0]}"
    lines = [
        "## PRS vs co-occurrence order on held-out pairs (bench/bench_pi2i_prs.py)",
        "",
        "Per (user, item) held-out pair reachable in the relaxed pool (depth 300): hit@k = the item is in",
        "the method's top k of the pool (seen items excluded). 95 % bootstrap intervals over pairs",
        f"(1000 resamples, seed {BOOT_SEED}); differences paired. New PRS: `{json.dumps(params) or 'defaults'}`,",
        f"seed {seeds[0]} in the interval columns, seeds {list(seeds)} in the spread column; old PRS = the code at",
        f"commit {LEGACY_COMMIT} (defaults), seed 0. 1 torch thread, load average at start {load_avg[0]:.1f}.",
        "",
        "| protocol / fold | k | pairs (users) | cooc order | old PRS | new PRS | new − cooc | old − cooc | new − old | new PRS over seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["stats"]
        get = lambda key, fmt, s=s: fmt(s[key]) if key in s else "–"  # noqa: E731
        spread = ", ".join(f"{v:.3f}" for v in r["new_seeds"])
        lines.append(
            f"| {r['protocol']} / {r['fold']} | {r['k']} | {r['n_pairs']} ({r['n_users']}) | {get('cooc order', f)} | "
            f"{get('old PRS', f)} | {get(new0, f)} | {get(f'{new0} - cooc order', fd)} | {get('old PRS - cooc order', fd)} | "
            f"{get(f'{new0} - old PRS', fd)} | {spread} |"
        )
    lines += ["", "Fit seconds (fit + recommend) and the training report's validation hit@10 (PRS, cooc order) per run:", ""]
    for r in rows:
        if r["k"] == KS[0]:
            lines.append(f"- {r['protocol']} / {r['fold']}: {json.dumps(r['fit_s'])}; train-val {json.dumps(r['train_val'])}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/ml100k"))
    ap.add_argument("--protocols", nargs="+", default=["temporal", "leave_last_out"])
    ap.add_argument("--folds", nargs="+", default=["valid"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--pi2i", default="{}", help="JSON dict of PI2I keyword overrides (new PRS)")
    ap.add_argument("--no-legacy", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    args = ap.parse_args()
    params = json.loads(args.pi2i)
    load_avg = os.getloadavg()
    rows = run(args.data, args.protocols, args.folds, args.seeds, params, not args.no_legacy, lambda m: print(m, flush=True))
    text = markdown(rows, params, args.seeds, load_avg)
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
