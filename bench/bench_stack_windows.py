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
paired difference to no stacking (``recsys.backtest.pooled_paired_test``: bootstrap 95% interval with users
resampled within each cut-off, and a paired t-test p-value). Every candidate feature column is used (the archive holds the union of OutRank's
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

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recsys.backtest import pooled_paired_test  # noqa: E402
from recsys.promotion import holdout_per_user  # noqa: E402
from recsys.rankers.features import LABEL, feature_columns  # noqa: E402
from recsys.rankers.lgbm import fit_feature_sets  # noqa: E402
from recsys.rankers.stacking import eligible, stacked_rows  # noqa: E402
from resources.training_windows import TrainingWindows  # noqa: E402

GRID = [{}, {"num_leaves": 7, "min_data_in_leaf": 50}]  # RankerConfig.params_grid's default


def _units(measure: pl.DataFrame, cutoff: str, stacked: int) -> pl.DataFrame:
    """The measure as recsys.backtest's per-user frame: (cut-off, user) units of NDCG@10, keyed by ``stacked``."""
    return measure.select(
        pl.lit(stacked).alias("stacked"),
        pl.lit(cutoff).alias("cutoff"),
        "user_id",
        pl.lit("ndcg").alias("metric"),
        pl.lit(10).alias("k"),
        pl.col("ndcg").alias("value"),
    )


def run(data_dir: Path, max_windows: int) -> tuple[list[dict], pl.DataFrame, str]:
    archive = TrainingWindows(data_dir)
    folders = sorted(p for p in archive.root.iterdir() if p.is_dir()) if archive.root.exists() else []
    if not folders:
        raise SystemExit(f"no archived training windows under {archive.root}: run a backtest with this commit first")
    rows, units = [], []
    key = tuple((folders[0] / "key.txt").read_text().split("\n")[:3])
    windows = archive.windows(key)
    for current in windows:
        earlier = eligible(windows, (current.start, current.end), max_windows)
        if not earlier:
            continue
        frame = current.rows.collect().filter((pl.col(LABEL) > 0).any().over("user_id")).sort("user_id", "item_id")
        cols = feature_columns(frame)
        for n in range(0, len(earlier) + 1):
            extra = stacked_rows(frame, [w.rows for w in earlier[:n]])
            started = time.monotonic()
            choice = fit_feature_sets(frame, {"all": cols}, None, GRID, extra_train=extra)
            wall = time.monotonic() - started
            measure = holdout_per_user(choice.model.holdout_scores)
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
            units.append(_units(measure, rows[-1]["window"], n))
            print(f"[bench_stack_windows] {rows[-1]}", flush=True)
    return rows, pl.concat(units), " | ".join(key)


def paired(units: pl.DataFrame, max_windows: int) -> pl.DataFrame:
    """Per number of stacked windows n: stacked − none on the (cut-off, user) units of the cut-offs that have n
    earlier windows (recsys.backtest.pooled_paired_test: stratified paired bootstrap, paired t-test)."""
    parts = []
    for n in range(1, max_windows + 1):
        with_n = units.filter(pl.col("stacked") == n)
        if with_n.height == 0:
            continue
        base = units.filter((pl.col("stacked") == 0) & pl.col("cutoff").is_in(with_n["cutoff"].unique().implode()))
        parts.append(pooled_paired_test(with_n.drop("stacked"), base.drop("stacked"), n_boot=2000).with_columns(pl.lit(n).alias("stacked")))
    return pl.concat(parts)


def render(rows: list[dict], units: pl.DataFrame, key: str, data_dir: Path, max_windows: int) -> str:
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
    for r in paired(units, max_windows).iter_rows(named=True):
        lines.append(
            f"| {r['stacked']} | {r['n_cutoffs']} | {r['n_users']} | {r['mean_diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | "
            f"{r['p_value']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--max-windows", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_stack_windows.md"))
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    rows, units, key = run(data_dir, args.max_windows)
    section = render(rows, units, key, data_dir, args.max_windows)
    out = Path(args.out)
    title = "## Stacked training windows (bench/bench_stack_windows.py)\n\n"
    old = out.read_text().removeprefix(title) if out.exists() else ""
    out.write_text(title + section + ("\n" + old if old else ""))
    print(section)


if __name__ == "__main__":
    main()
