"""Replay a bundled dataset into a landing folder, one day-file at a time, to watch live mode.

    make replay DATASET=movielens-100k LANDING=data/landing PACE=10   # or:
    python -m orchestration.replay --dataset synthetic:200000 --to data/landing --interval-s 10 --days 14

Each day of the dataset becomes one file in the folder, written under a hidden name and renamed
into place (the landing sensor never sees half a file): RecBole ``<day>.inter`` for rating data
(MovieLens), Taobao ``<day>.csv`` for behaviour logs (taobao, synthetic). The catalogue goes first,
as ``items.parquet`` and ``users.parquet``. Days already in the folder are skipped, so a stopped
replay resumes where it was. ``--corrupt DAY=SHARE`` replaces that share of one day's lines by
garbage (the day's ``quarantine_share`` check then fails and raises an alert), for demonstrations.

Point recdag at the same folder (``RECDAG_DATASET=landing:<folder> make ui``) and the landing
sensor turns each new file into partitions and ingestion runs (docs/operations.md, "Live mode").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from recsys.sources.taobao import BEHAVIORS
from resources.datasets import DatasetSource

TAOBAO_BEHAVIOR = {stored: raw for raw, stored in BEHAVIORS.items()}
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def write_atomic(path: Path, write) -> None:
    """``write(tmp_path)`` then rename into ``path``: readers see the whole file or none of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def day_lines(events: pl.DataFrame, categories: pl.DataFrame) -> tuple[str, list[str]]:
    """(suffix, lines) of one day's events in the landing format that keeps what they carry."""
    epoch = (pl.col("ts").dt.epoch("us") / 1_000_000).round(0).cast(pl.Int64).cast(pl.Utf8)
    if events.height and (events["event_type"] == "rate").all():
        text = events.select(pl.concat_str([pl.col("user_id"), pl.col("item_id"), pl.col("value"), epoch], separator="\t"))
        return ".inter", [INTER_HEADER, *text.to_series().to_list()]
    behaviour = pl.col("event_type").replace_strict(TAOBAO_BEHAVIOR, default="pv")
    text = events.join(categories, on="item_id", how="left").select(
        pl.concat_str([pl.col("user_id"), pl.col("item_id"), pl.col("category_id").fill_null(0), behaviour, epoch], separator=",")
    )
    return ".csv", text.to_series().to_list()


def corrupt(lines: list[str], share: float, seed: int) -> list[str]:
    """Replace ``share`` of the data lines (never a header) by lines no format accepts."""
    rng = np.random.default_rng(seed)
    start = 1 if lines and lines[0].startswith("user_id:") else 0
    picks = rng.choice(np.arange(start, len(lines)), size=int(round(share * (len(lines) - start))), replace=False)
    out = list(lines)
    for k in picks:
        out[k] = f"corrupt-row-{k},??,not-a-time"
    return out


def replay(
    dataset: str,
    folder: Path,
    *,
    interval_s: float = 0.0,
    days: int | None = None,
    skip_days: int = 0,
    corrupt_day: tuple[date, float] | None = None,
    data_dir: str | None = None,
    log=print,
) -> list[Path]:
    source = DatasetSource(dataset=dataset, **({"data_dir": data_dir} if data_dir else {}))
    reader = source.reader()
    folder.mkdir(parents=True, exist_ok=True)
    items = reader.items()
    for name, frame in (("items.parquet", items), ("users.parquet", reader.users())):
        if not (folder / name).exists():
            write_atomic(folder / name, frame.write_parquet)
    categories = items.select(
        "item_id", pl.col("category_id") if "category_id" in items.columns else pl.lit(None, pl.Int64).alias("category_id")
    )
    lo, hi = reader.date_bounds()
    all_days = [lo + timedelta(days=k) for k in range((hi - lo).days + 1)][skip_days:]
    written = []
    for n, day in enumerate(all_days[:days] if days else all_days):
        if any((folder / f"{day.isoformat()}{suffix}").exists() for suffix in (".csv", ".inter")):
            continue
        events = reader.read_window(day, day).interactions
        if events.is_empty():
            continue
        suffix, lines = day_lines(events, categories)
        if corrupt_day and corrupt_day[0] == day:
            lines = corrupt(lines, corrupt_day[1], seed=day.toordinal())
        target = folder / f"{day.isoformat()}{suffix}"
        write_atomic(target, lambda tmp, body="\n".join(lines) + "\n": tmp.write_text(body))
        written.append(target)
        log(f"replay: {target.name} ({len(lines):,} lines)")
        if interval_s and n + 1 < len(all_days):
            time.sleep(interval_s)
    return written


def _corrupt_arg(text: str) -> tuple[date, float]:
    day, _, share = text.partition("=")
    try:
        value = (date.fromisoformat(day), float(share or 0.3))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--corrupt {text!r}: expected YYYY-MM-DD=SHARE, e.g. 2017-11-27=0.3") from None
    if not 0 < value[1] <= 1:
        raise argparse.ArgumentTypeError(f"--corrupt {text!r}: SHARE must be in (0, 1]")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k", help="a bundled dataset spec: movielens-100k, taobao:<csv>, synthetic:N ...")
    parser.add_argument("--to", required=True, type=Path, help="the landing folder (created if missing)")
    parser.add_argument("--interval-s", type=float, default=10.0, help="seconds between two days (0 = as fast as possible)")
    parser.add_argument("--days", type=int, default=None, help="replay at most this many days")
    parser.add_argument("--skip-days", type=int, default=0, help="start this many days after the dataset's first day")
    parser.add_argument("--corrupt", type=_corrupt_arg, default=None, metavar="DAY=SHARE", help="garble SHARE of DAY's lines")
    args = parser.parse_args(argv)
    if args.dataset.startswith("landing:"):
        parser.error("--dataset must be a source to replay from, not a landing folder")
    written = replay(args.dataset, args.to, interval_s=args.interval_s, days=args.days, skip_days=args.skip_days, corrupt_day=args.corrupt)
    print(f"replay: {len(written)} day files written to {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
