"""The torch stages on a GPU: the same recsys code on cuda and on the CPU, side by side, in one run.

    python bench/bench_gpu.py --n 2000000 --out results_gpu.md   # cpu only where torch sees no GPU

A synthetic log of ``--n`` events (recsys.synthetic, every day, its catalogue), split by time
(recsys.split.temporal_split, 80/10/10). For each runtime (cuda fp32 and cuda bf16 autocast when
torch sees a GPU, then the CPU with every core) the fits the pipeline's assets make through the
ComputeResource's TorchRuntime (resources/compute.py builds the same object from its config):

- two_tower: TwoTowerChannel (default settings: per-epoch sample budget, early stopping) on train,
  top-100 lists for every valid user;
- pi2i: PI2I (the PRS scorer over the relaxed item-to-item index) on train, top-100 lists for every
  valid user;
- sequence_ranker: SequenceRanker on the valid users' two-tower top-100 lists (the first runtime's
  lists, the same rows for every runtime), labelled by the valid window, no channel features: its
  held-out users' NDCG@10 (the model's own early-stopping measure, users it did not train on).

Reported per stage and runtime: fit and recommend wall seconds, peak GPU memory, and NDCG@10 /
Recall@100 of the lists against the valid window (the valid fold: a speed and parity check of the
device, not a quality claim; the test fold is not read). Writes markdown to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_neural_budget import synthetic_log  # noqa: E402  (the same synthetic log and catalogue)

from recsys.metrics import evaluate  # noqa: E402
from recsys.runtime import TorchRuntime  # noqa: E402
from recsys.split import temporal_split  # noqa: E402

K = 100


def runtimes() -> list[tuple[str, TorchRuntime]]:
    import torch

    quiet = lambda m: None  # noqa: E731
    out = []
    if torch.cuda.is_available():
        out += [
            (f"cuda {p}", TorchRuntime(device="cuda", precision=p, threads=os.cpu_count() or 1, seed=0, log=quiet))
            for p in ("fp32", "bf16")
        ]
    return out + [("cpu", TorchRuntime(device="cpu", threads=os.cpu_count() or 1, seed=0, log=quiet))]


def _accuracy(recs: pl.DataFrame, truth: pl.DataFrame) -> tuple[float, float]:
    m = evaluate(recs, truth, ks=(10, K), metrics=("ndcg", "recall"))
    get = lambda metric, k: float(m.filter((pl.col("metric") == metric) & (pl.col("k") == k))["value"][0])  # noqa: E731
    return get("ndcg", 10), get("recall", K)


def _timed(fn):
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.monotonic()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")
    return out, time.monotonic() - start, peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_gpu.md"))
    args = ap.parse_args()
    import torch

    from recsys.channels.two_tower import TwoTowerChannel
    from recsys.pi2i.serve import PI2I
    from recsys.rankers.sequence import SequenceRanker, SequenceRankerParams

    t0 = time.monotonic()
    events, items = synthetic_log(args.n)
    split = temporal_split(events)
    train, valid = split.train, split.valid
    truth = valid.select("user_id", "item_id").unique()
    users = truth["user_id"].unique().sort()
    print(f"[bench_gpu] {events.height:,} events, {users.len():,} valid users, data {time.monotonic() - t0:.0f} s", flush=True)
    rows, lists = [], None
    for label, runtime in runtimes():
        tower, fit_s, peak = _timed(lambda r=runtime: TwoTowerChannel().fit(train, items, runtime=r))
        recs, rec_s, _ = _timed(lambda m=tower: m.recommend(users, k=K))
        rows.append(("two_tower", label, fit_s, rec_s, peak, *_accuracy(recs, truth)))
        lists = recs if lists is None else lists  # the first runtime's lists: the sequence ranker's rows on every runtime
        print(f"[bench_gpu] {rows[-1]}", flush=True)
        model, fit_s, peak = _timed(lambda r=runtime: PI2I().fit(train, items=items, runtime=r))
        recs, rec_s, _ = _timed(lambda m=model: m.recommend(users, k=K))
        rows.append(("pi2i", label, fit_s, rec_s, peak, *_accuracy(recs, truth)))
        print(f"[bench_gpu] {rows[-1]}", flush=True)
        frame = lists.select("user_id", "item_id").join(
            truth.with_columns(pl.lit(1.0).alias("label")), on=["user_id", "item_id"], how="left"
        )
        frame = frame.with_columns(pl.col("label").fill_null(0.0))
        ranker, fit_s, peak = _timed(
            lambda r=runtime, f=frame: SequenceRanker(SequenceRankerParams(feature_cols=())).fit(f, train, items, runtime=r)
        )
        rows.append(("sequence_ranker", label, fit_s, float("nan"), peak, ranker.valid_ndcg10, float("nan")))
        print(f"[bench_gpu] {rows[-1]}", flush=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        "## The torch stages on a GPU (bench/bench_gpu.py)",
        "",
        f"`python bench/bench_gpu.py --n {args.n}`: {events.height:,} synthetic events, {users.len():,} valid users; "
        f"machine {platform.machine()}, {os.cpu_count()} CPU cores, GPU {gpu}, torch {torch.__version__}. One run each; "
        "the same recsys code and TorchRuntime on every row. NDCG@10 / Recall@100 on the valid window (valid fold; the test "
        "fold is not read); the sequence ranker's NDCG@10 is its held-out valid users' (users it did not train on).",
        "",
        "| stage | runtime | fit s | recommend s | peak GPU MiB | NDCG@10 | Recall@100 |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage, label, fit_s, rec_s, peak, ndcg, recall in rows:
        rec = "" if rec_s != rec_s else f"{rec_s:.1f}"
        rc = "" if recall != recall else f"{recall:.4f}"
        gpu_mib = f"{peak:.0f}" if label.startswith("cuda") else "–"  # a CPU row's reading is what earlier cuda rows still hold
        lines.append(f"| {stage} | {label} | {fit_s:.1f} | {rec} | {gpu_mib} | {ndcg:.4f} | {rc} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
