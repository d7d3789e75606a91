"""Neural training on a per-epoch sample budget, and MiniLM encoding with the per-text cache.

    python bench/bench_neural_budget.py two_tower --n 2000000 --epochs 1   # budget vs no budget
    python bench/bench_neural_budget.py encode --n-texts 5000 --changed 0.01

two_tower: a synthetic log of ``--n`` events (recsys.synthetic, all days, its catalogue for the
categories), TwoTowerChannel(epochs=--epochs) fitted twice on one torch thread: with the default
budget (max_samples_per_epoch=200k, max_val_users=2k) and without (both None, the former
behaviour). Reported per setting: the examples an epoch trained on, the users scored, wall seconds
per epoch (training + validation, from the timestamps of the epoch log lines) and for the whole fit.

encode: ``--n-texts`` synthetic catalogue titles through recsys.channels.content.encode_texts with
a fresh cache folder: cold (every text encoded), warm (the same texts: none encoded), and warm with
``--changed`` of the texts edited (only those encoded). Seconds per call and texts encoded.

Writes markdown to ``--out`` (default bench/results_neural_budget.md, the section is replaced).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.runtime import TorchRuntime  # noqa: E402
from recsys.synthetic import SyntheticConfig, SyntheticWorld, generate_day  # noqa: E402


def synthetic_log(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    from datetime import timedelta

    world = SyntheticWorld.build(SyntheticConfig(n_interactions=n))
    c = world.config
    days = [generate_day(world, c.start + timedelta(days=d)) for d in range(c.n_days)]
    return pl.concat(days), world.items()


def bench_two_tower(n: int, epochs: int) -> list[str]:
    import torch  # noqa: F401  (imported before the timings)

    from recsys.channels.two_tower import TwoTowerChannel

    t0 = time.monotonic()
    history, items = synthetic_log(n)
    gen_s = time.monotonic() - t0
    rows = []
    for label, kw in (
        ("budget (200k examples, 2k val users)", {}),
        ("no budget (former behaviour)", {"max_samples_per_epoch": None, "max_val_users": None}),
    ):
        stamps: list[tuple[float, str]] = []
        runtime = TorchRuntime(threads=1, seed=0, log=lambda m, s=stamps: s.append((time.monotonic(), m)))
        started = time.monotonic()
        model = TwoTowerChannel(epochs=epochs, patience=epochs + 1, **kw).fit(history, items, runtime=runtime)
        fit_s = time.monotonic() - started
        marks = [t for t, m in stamps if m.startswith("two_tower epoch ")]
        setup = [t for t, m in stamps if m.startswith("two_tower: ")][0]
        per_epoch = np.diff([setup, *marks])
        rows.append(
            f"| {label} | {model.n_train_rows_:,} | {model.history_[0]['n_samples']:,} | {model.n_val_scored_:,} of "
            f"{model.n_val_users_:,} | {' / '.join(f'{s:.1f}' for s in per_epoch)} | {fit_s:.1f} |"
        )
        print(rows[-1], flush=True)
    head = [
        f"## two_tower on synthetic:{n} ({history.height:,} events, {history['user_id'].n_unique():,} users, "
        f"{items.height:,} items), {epochs} epoch(s), 1 torch thread",
        "",
        f"`python bench/bench_neural_budget.py two_tower --n {n} --epochs {epochs}`; log generated in {gen_s:.0f} s (not counted); "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| setting | training examples | per epoch | val users scored | s per epoch (train + val) | fit s |",
        "|---|---|---|---|---|---|",
    ]
    return head + rows


def bench_encode(n_texts: int, changed: float) -> list[str]:
    from recsys.channels import content

    titles = SyntheticWorld.build(SyntheticConfig(n_interactions=n_texts * 25)).items()["title"].to_list()[:n_texts]
    runtime = TorchRuntime(threads=1, seed=0, log=lambda m: None)
    content._load_model("cpu")  # model load is paid once per process, not per call: kept out of the timings
    rng = np.random.default_rng(0)
    edited = list(titles)
    for i in rng.choice(len(titles), size=max(1, int(round(changed * len(titles)))), replace=False):
        edited[i] = edited[i] + " v2"
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for label, texts in (("cold cache", titles), ("warm, unchanged", titles), (f"warm, {changed:.0%} changed", edited)):
            before = content.ENCODE_STATS["encoded"]
            started = time.monotonic()
            content.encode_texts(texts, runtime, cache_dir=cache)
            rows.append(f"| {label} | {len(texts):,} | {content.ENCODE_STATS['encoded'] - before:,} | {time.monotonic() - started:.2f} |")
            print(rows[-1], flush=True)
        size = sum(f.stat().st_size for f in Path(cache).iterdir())
    head = [
        f"## encode_texts (MiniLM, CPU, 1 thread) on {n_texts:,} synthetic titles",
        "",
        f"`python bench/bench_neural_budget.py encode --n-texts {n_texts} --changed {changed}`; cache on disk {size / 2**20:.1f} MiB; "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| call | texts | encoded | s |",
        "|---|---|---|---|",
    ]
    return head + rows


def write_section(out: Path, lines: list[str]) -> None:
    title = lines[0].split(" on ")[0]
    text = out.read_text() if out.exists() else "# Neural training budget and text-embedding cache\n"
    kept, skip = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            skip = line.split(" on ")[0] == title
        if not skip:
            kept.append(line)
    out.write_text("\n".join([*kept, "", *lines]).rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="*", help="two_tower and/or encode (default: both)")
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-texts", type=int, default=5_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results_neural_budget.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    unknown = set(args.what) - {"two_tower", "encode"}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}: choose from two_tower, encode")
    for what in args.what or ["two_tower", "encode"]:
        lines = bench_two_tower(args.n, args.epochs) if what == "two_tower" else bench_encode(args.n_texts, args.changed)
        write_section(args.out, lines)


if __name__ == "__main__":
    main()
