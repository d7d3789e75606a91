"""Do stacked training windows help LightGBM? Measured on valid only, from a finished backtest's archive.

    python bench/bench_stack_windows.py --data-dir /tmp/bt/data [--max-windows 3] [--out bench/results_stack_windows.md]

A backtest (``make backtest N=4``) runs one cut-off after another; each ``lgbm_ranker`` run archives its
labelled lists under ``<data dir>/training_windows`` (resources/training_windows.py). For each archived
window that has earlier ones, this script refits LightGBM the way ``lgbm_ranker`` does (``fit_feature_sets``
over the default settings grid, early stopping on the same hash slice, the out-of-fold scores of every
labelled user) on that window alone and with the 1, 2, ... newest eligible earlier windows stacked
(recsys/rankers/stacking.py), and reads the promotion gate's measure: the held-out NDCG@10 within the
candidate lists of every labelled user of that window, each scored by a model that did not see that
user's labels (``recsys.promotion.holdout_ndcg``). The test fold is never read.

Per cut-off and number of stacked windows: the measure; pooled over cut-offs ((cut-off, user) units): the
paired difference to no stacking with a bootstrap 95% interval (users resampled within each cut-off) and
a paired t-test p-value. Every candidate feature column is used (the archive holds the union of OutRank's
lists); the asset additionally chooses between OutRank's lists. Results go to ``--out`` (newest first).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recsys.rankers.features import LABEL, feature_columns, per_group_ndcg_at_k  # noqa: E402
from recsys.rankers.lgbm import fit_feature_sets  # noqa: E402
from recsys.rankers.stacking import eligible, stacked_rows  # noqa: E402
from resources.training_windows import TrainingWindows  # noqa: E402

GRID = [{}, {"num_leaves": 7, "min_data_in_leaf": 50}]  # RankerConfig.params_grid's default


def per_user(holdout: pl.DataFrame) -> pl.DataFrame:
    """user_id, ndcg: the gate's per-user measure of a model's out-of-fold scores."""
    rows = holdout.filter((pl.col(LABEL) > 0).any().over("user_id")).sort("user_id")
    users = rows["user_id"].unique(maintain_order=True)
    return pl.DataFrame(
        {"user_id": users, "ndcg": per_group_ndcg_at_k(rows["user_id"].to_numpy(), rows[LABEL].to_numpy(), rows["score"].to_numpy())}
    )


def paired(diffs: list[np.ndarray], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float, float, int]:
    """(mean, 2.5%, 97.5%, p, units) of per-unit differences pooled over strata (cut-offs), bootstrap within strata."""
    pooled = np.concatenate(diffs)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        boots[b] = np.concatenate([d[rng.integers(0, len(d), len(d))] for d in diffs]).mean()
    p = float(stats.ttest_1samp(pooled, 0.0).pvalue) if len(pooled) > 1 and pooled.std() > 0 else float("nan")
    return float(pooled.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)), p, len(pooled)


def run(data_dir: Path, max_windows: int) -> tuple[list[dict], dict[int, list[np.ndarray]], str]:
    archive = TrainingWindows(data_dir)
    folders = sorted(p for p in archive.root.iterdir() if p.is_dir()) if archive.root.exists() else []
    if not folders:
        raise SystemExit(f"no archived training windows under {archive.root}: run a backtest with this commit first")
    rows, diffs = [], {n: [] for n in range(1, max_windows + 1)}
    key = tuple((folders[0] / "key.txt").read_text().split("\n")[:3])
    windows = archive.windows(key)
    for current in windows:
        earlier = eligible(windows, (current.start, current.end), max_windows)
        if not earlier:
            continue
        frame = current.rows.collect().filter((pl.col(LABEL) > 0).any().over("user_id")).sort("user_id", "item_id")
        cols = feature_columns(frame)
        base = None
        for n in range(0, len(earlier) + 1):
            extra = stacked_rows(frame, [w.rows for w in earlier[:n]])
            started = time.monotonic()
            choice = fit_feature_sets(frame, {"all": cols}, None, GRID, extra_train=extra)
            wall = time.monotonic() - started
            measure = per_user(choice.model.holdout_scores)
            rows.append(
                {
                    "window": f"{current.start:%Y-%m-%d} .. {current.end:%Y-%m-%d}",
                    "stacked": n,
                    "users": measure.height,
                    "lists_stacked": 0 if extra is None else extra["user_id"].n_unique(),
                    "ndcg10": float(measure["ndcg"].mean()),
                    "setting": str(choice.params.num_leaves),
                    "wall_s": wall,
                }
            )
            if n == 0:
                base = measure
            else:
                joined = measure.join(base, on="user_id", suffix="_base")
                diffs[n].append((joined["ndcg"] - joined["ndcg_base"]).to_numpy())
            print(f"[bench_stack_windows] {rows[-1]}", flush=True)
    return rows, diffs, " | ".join(key)


def render(rows: list[dict], diffs: dict[int, list[np.ndarray]], key: str, data_dir: Path) -> str:
    frame = pl.DataFrame(rows)
    lines = [
        f"### Stacked training windows, valid only ({datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {os.cpu_count()} cores)",
        "",
        f"`python bench/bench_stack_windows.py --data-dir {data_dir}`; comparison key {key}. Held-out NDCG@10 (the promotion "
        "gate's measure: within the candidate lists, every labelled user of the window scored out of fold) of LightGBM fitted on "
        "the window alone and with the newest eligible earlier windows stacked.",
        "",
        "| label window | users | stacked windows | lists stacked | held-out NDCG@10 | num_leaves chosen | fit wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in frame.iter_rows(named=True):
        lines.append(
            f"| {r['window']} | {r['users']} | {r['stacked']} | {r['lists_stacked']} | {r['ndcg10']:.4f} | {r['setting']} | {r['wall_s']:.1f} |"
        )
    lines += ["", "Paired difference to no stacking, pooled over the cut-offs that have that many earlier windows:", ""]
    lines += [
        "| stacked windows | cut-offs | (cut-off, user) units | mean difference [95% bootstrap] | paired t p |",
        "|---|---|---|---|---|",
    ]
    for n, parts in diffs.items():
        if not parts:
            continue
        mean, lo, hi, p, units = paired(parts)
        lines.append(f"| {n} | {len(parts)} | {units} | {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] | {p:.3g} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--max-windows", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_stack_windows.md"))
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    rows, diffs, key = run(data_dir, args.max_windows)
    section = render(rows, diffs, key, data_dir)
    out = Path(args.out)
    title = "## Stacked training windows (bench/bench_stack_windows.py)\n\n"
    old = out.read_text().removeprefix(title) if out.exists() else ""
    out.write_text(title + section + ("\n" + old if old else ""))
    print(section)


if __name__ == "__main__":
    main()
