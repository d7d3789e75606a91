"""The one home of environment-driven settings, read once per process."""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"


def data_dir() -> Path:
    return Path(os.environ.get("RECDAG_DATA_DIR", str(REPO_ROOT / "data"))).resolve()


def dataset_spec() -> str:
    return os.environ.get("RECDAG_DATASET", "movielens-100k")


def split_spec() -> str:
    return os.environ.get("RECDAG_SPLIT", "temporal")


DUCKDB_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


def duckdb_memory_limit() -> str | None:
    """RECDAG_DUCKDB_MEMORY_LIMIT: the most memory the warehouse's DuckDB may hold (e.g. ``6GB``); past it,
    DuckDB spills its joins, sorts and aggregates to disk (``<warehouse>.tmp``) instead of growing. Unset:
    DuckDB's own default, 80% of the machine's RAM, which leaves little for the step's Python side
    (polars, numpy, torch) in the same process. docs/scale.md, "Budgets"."""
    value = os.environ.get("RECDAG_DUCKDB_MEMORY_LIMIT", "").strip()
    if not value:
        return None
    if not DUCKDB_MEMORY.match(value):
        raise ValueError(f"RECDAG_DUCKDB_MEMORY_LIMIT={value!r}: expected a size such as 6GB, 512MB or 4GiB")
    return value


def cutoff_window_days() -> int | None:
    """RECDAG_CUTOFF_DAYS: length of a rolling-origin test window; unset = a tenth of the data's span."""
    return _positive_int("RECDAG_CUTOFF_DAYS", None, unit="days")


EVAL_USERS_DEFAULT = 50_000


def eval_users() -> int:
    """RECDAG_EVAL_USERS: the most users a fold's per-user evaluation scores (default 50,000); past it,
    a seeded uniform sample of that many (recsys.metrics.sampling; docs/evaluation.md, "Evaluating at scale")."""
    return _positive_int("RECDAG_EVAL_USERS", EVAL_USERS_DEFAULT, unit="users")


TRAIN_USERS_DEFAULT = 20_000


def train_users() -> int:
    """RECDAG_TRAIN_USERS: the most valid-fold users the pipeline makes lists for (default 20,000): every
    channel's valid candidates, the pool, the rankers' training frame and every valid-fold metric; past it,
    a seeded uniform sample of that many (assets.common.fold_users; docs/scale.md). The test fold is never sampled."""
    return _positive_int("RECDAG_TRAIN_USERS", TRAIN_USERS_DEFAULT, unit="users")


ENGINES = ("duckdb", "spark")


def engine() -> str:
    """RECDAG_ENGINE: where the data-parallel transforms run, ``duckdb`` (default) or ``spark``
    (resources/engine.py; docs/scale-out.md)."""
    value = os.environ.get("RECDAG_ENGINE", "").strip().lower() or "duckdb"
    if value not in ENGINES:
        raise ValueError(f"RECDAG_ENGINE={value!r}: expected one of {', '.join(ENGINES)}")
    return value


def lake_dir() -> str:
    """RECDAG_LAKE_DIR: the root of the Parquet day-partitions the engines exchange (default <data dir>/lake)."""
    return os.environ.get("RECDAG_LAKE_DIR", "").strip() or str(data_dir() / "lake")


def spark_master() -> str:
    """RECDAG_SPARK_MASTER: the Spark master URL (default ``local[2]``: Spark in this process's JVM);
    ``spark://host:7077``, ``k8s://...`` or ``yarn`` reach a cluster."""
    return os.environ.get("RECDAG_SPARK_MASTER", "").strip() or "local[2]"


def spark_remote() -> str | None:
    """RECDAG_SPARK_REMOTE: a Spark Connect URL (``sc://host:15002``); set, it replaces the master."""
    return os.environ.get("RECDAG_SPARK_REMOTE", "").strip() or None


def alert_webhook_url() -> str | None:
    return os.environ.get("RECDAG_ALERT_WEBHOOK") or None


def ts_window():
    """The plausible-timestamp rule of file sources (``recsys.sources.lines.PlausibleWindow``).

    ``RECDAG_TS_WINDOW=YYYY-MM-DD..YYYY-MM-DD`` fixes the window (either end may be left empty:
    ``2017-11-25..`` keeps the computed end); ``RECDAG_TS_QUANTILE`` (default 0.01) sets the quantile
    of the computed rule. Unset: the default rule (1%/99% day quantiles, padded)."""
    from recsys.sources.lines import PlausibleWindow

    kwargs: dict = {}
    raw = os.environ.get("RECDAG_TS_WINDOW", "").strip()
    if raw:
        lo, sep, hi = raw.partition("..")
        try:
            if not sep or not (lo.strip() or hi.strip()):
                raise ValueError
            kwargs["lo"] = date.fromisoformat(lo.strip()) if lo.strip() else None
            kwargs["hi"] = date.fromisoformat(hi.strip()) if hi.strip() else None
        except ValueError:
            raise ValueError(f"RECDAG_TS_WINDOW={raw!r}: expected YYYY-MM-DD..YYYY-MM-DD (one end may be empty)") from None
    q = os.environ.get("RECDAG_TS_QUANTILE", "").strip()
    if q:
        try:
            kwargs["quantile"] = float(q)
        except ValueError:
            raise ValueError(f"RECDAG_TS_QUANTILE={q!r}: expected a number in [0, 0.5)") from None
    try:
        return PlausibleWindow(**kwargs)
    except ValueError as exc:
        raise ValueError(f"RECDAG_TS_WINDOW / RECDAG_TS_QUANTILE: {exc}") from None


def landing_interval_s() -> int:
    """RECDAG_LANDING_INTERVAL_S: seconds between two looks of the landing sensor at its folder (live mode)."""
    return _positive_int("RECDAG_LANDING_INTERVAL_S", 30)


def retrain_cron() -> str:
    """RECDAG_RETRAIN_CRON: when the weekly retrain fires (default Mondays 04:00 UTC)."""
    return os.environ.get("RECDAG_RETRAIN_CRON", "0 4 * * 1")


def _positive_int(name: str, default: int | None, unit: str = "") -> int | None:
    """The whole number >= 1 in environment variable ``name``; ``default`` when unset or empty."""
    raw = os.environ.get(name)
    if not raw:
        return default
    expected = f"expected a whole number{f' of {unit}' if unit else ''} >= 1"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: {expected}") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r}: {expected}")
    return value
