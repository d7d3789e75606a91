"""How should the final-stage guard choose? Selection rules compared on valid only, by split halves.

    python bench/bench_guard_rule.py --runs temporal=data,files=/tmp/files/data,llo=/tmp/llo/data

The guard (recsys/final_stage.py) compares about 15 candidates (each passed ranker, their blend, their
blend with the best channel, the pool, every channel) on the rankers' held-out valid users and serves
the best. With few users (ML-100K temporal: 68) the best of 15 noisy means is partly luck. This script
measures, on a finished run's warehouse and without reading its test fold, what each selection rule
delivers on users it did not choose on: the guard's users are split at random into halves A and B
(``--splits`` times, seed 0); a rule chooses on A (the blend with the best channel is rebuilt with
A's best channel); the chosen candidate's NDCG@10 on B is recorded. Rules:

- ``argmax``: the best mean on A (what the guard has done so far);
- ``default unless decided``: the rankers' blend (the ranker, when one passed), unless A's best is
  better than it with a paired 95% interval above zero (normal approximation of the per-user differences);
- ``default unless ahead by 1 SE``: the same with one standard error of the paired difference instead of 1.96;
- ``default``: always the rankers' blend;
- ``best channel``: A's best channel;
- ``oracle``: the best on B (an upper bound, not a rule).

Per run: the mean over splits of each rule's NDCG@10 on B, its difference to ``argmax`` (mean over
splits, with the 2.5/97.5 percentiles over splits) and how often the two rules chose differently.
Results go to bench/results_guard_rule.md (``--out``), newest first.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assets.common import fold_truth, load_split  # noqa: E402
from assets.final_stage import _lists  # noqa: E402
from assets.rankers import RANKER_STAGES  # noqa: E402
from recsys.final_stage import KINDS, _per_user, ranked_users, with_channel_blend  # noqa: E402
from resources.warehouse import Warehouse  # noqa: E402

RULES = ("argmax", "default unless ahead by 1 SE", "default unless decided", "default", "best channel", "oracle")


def candidate_matrix(data_dir: str, k: int = 100) -> tuple[np.ndarray, list[str], list[str], int]:
    """(users × candidates NDCG@10 on valid, names, kinds, n_rankers) as the guard sees them."""
    warehouse = Warehouse(data_dir=data_dir)
    split = load_split(warehouse)
    _, _, truth = fold_truth(split, "valid")
    passed = [n for n in RANKER_STAGES if warehouse.table_exists(f"candidates.{n}")]
    lists, kinds = _lists(warehouse, "valid", passed, k)
    users = ranked_users(lists, passed)
    for channel in [n for n in lists if kinds[n] == "channel"]:
        with_channel_blend(lists, kinds, f"blend+{channel}", k)
    names = list(lists)
    frame = pl.DataFrame({"user_id": users})
    columns = []
    for name in names:
        rows = _per_user(lists[name], truth, users, 10).select("user_id", "value")
        columns.append(frame.join(rows, on="user_id", how="left")["value"].fill_null(0.0).to_numpy())
    return np.column_stack(columns), names, [kinds[n] for n in names], len(passed)


def _ahead(a: np.ndarray, b: np.ndarray, z: float) -> bool:
    """a's mean above b's by more than ``z`` standard errors of the paired difference."""
    d = a - b
    return d.mean() - z * d.std(ddof=1) / np.sqrt(len(d)) > 0 if len(d) > 1 else False


def study(x: np.ndarray, names: list[str], kinds: list[str], n_rankers: int, n_splits: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    tie = np.array([KINDS.index(k) for k in kinds])
    channels = [i for i, k in enumerate(kinds) if k == "channel"]
    default = names.index("blend") if n_rankers > 1 else next(i for i, k in enumerate(kinds) if k == "ranker")
    fixed = [i for i, nm in enumerate(names) if not nm.startswith("blend+")]
    out = {r: [] for r in RULES}
    picks = {r: [] for r in RULES}
    for _ in range(n_splits):
        perm = rng.permutation(n)
        a, b = perm[: n // 2], perm[n // 2 :]
        mean_a = x[a].mean(axis=0)
        best_ch = max(channels, key=lambda i: (mean_a[i], -i))
        allowed = fixed + [names.index(f"blend+{names[best_ch]}")]
        argmax = max(allowed, key=lambda i: (mean_a[i], -tie[i], -i))
        one_se, guarded = (argmax if argmax != default and _ahead(x[a, argmax], x[a, default], z) else default for z in (1.0, 1.96))
        oracle = max(allowed, key=lambda i: x[b, i].mean())
        for rule, i in zip(RULES, (argmax, one_se, guarded, default, best_ch, oracle)):
            out[rule].append(x[b, i].mean())
            picks[rule].append(names[i])
    return {r: (np.array(out[r]), picks[r]) for r in RULES}


def render(results: dict, args, head: str) -> str:
    lines = [
        f"### {datetime.now():%Y-%m-%d %H:%M} (HEAD {head})",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}; `python bench/bench_guard_rule.py --runs {args.runs} "
        f"--splits {args.splits}`. Valid fold only; halves of the guard's users, seed 0. NDCG@10 on the half not chosen on.",
        "",
        "| run | users | candidates | rule | NDCG@10 on B (mean over splits) | − argmax (mean [2.5%, 97.5%] over splits) | differs from argmax | most chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run, (n_users, n_cands, res) in results.items():
        base, base_picks = res["argmax"]
        for rule in RULES:
            vals, picks = res[rule]
            d = vals - base
            differ = np.mean([p != q for p, q in zip(picks, base_picks)])
            top = pl.Series(picks).value_counts(sort=True).head(3)
            most = ", ".join(f"{r[0]} {r[1] / len(picks):.0%}" for r in top.iter_rows())
            diff = "" if rule == "argmax" else f"{d.mean():+.4f} [{np.percentile(d, 2.5):+.4f}, {np.percentile(d, 97.5):+.4f}]"
            lines.append(
                f"| {run} | {n_users} | {n_cands} | {rule} | {vals.mean():.4f} | {diff} | {'' if rule == 'argmax' else f'{differ:.0%}'} | {most} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="name=DATA_DIR,... finished runs (their warehouse.duckdb)")
    ap.add_argument("--splits", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_guard_rule.md"))
    args = ap.parse_args()
    results = {}
    for spec in args.runs.split(","):
        name, data_dir = spec.split("=", 1)
        x, names, kinds, n_rankers = candidate_matrix(data_dir)
        results[name] = (x.shape[0], x.shape[1], study(x, names, kinds, n_rankers, args.splits))
        print(f"[bench_guard_rule] {name}: {x.shape[0]} users, {x.shape[1]} candidates", flush=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = Path(args.out)
    title = "## Final-stage guard: selection rules on valid halves (bench/bench_guard_rule.py)\n\n"
    old = out.read_text().removeprefix(title) if out.exists() else ""
    text = render(results, args, head)
    out.write_text(title + text + ("\n" + old if old else ""))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
