"""The one home of environment-driven settings, read once per process."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"


def data_dir() -> Path:
    return Path(os.environ.get("RECDAG_DATA_DIR", str(REPO_ROOT / "data"))).resolve()


def dataset_spec() -> str:
    return os.environ.get("RECDAG_DATASET", "movielens-100k")


def split_spec() -> str:
    return os.environ.get("RECDAG_SPLIT", "temporal")


def cutoff_window_days() -> int | None:
    """RECDAG_CUTOFF_DAYS: length of a rolling-origin test window; unset = a tenth of the data's span."""
    raw = os.environ.get("RECDAG_CUTOFF_DAYS")
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"RECDAG_CUTOFF_DAYS={raw!r}: expected a whole number of days >= 1") from None
    if days < 1:
        raise ValueError(f"RECDAG_CUTOFF_DAYS={raw!r}: expected a whole number of days >= 1")
    return days


def alert_webhook_url() -> str | None:
    return os.environ.get("RECDAG_ALERT_WEBHOOK") or None
