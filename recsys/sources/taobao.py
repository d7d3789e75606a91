"""Taobao UserBehavior / PI2I-style CSV, streamed into a per-day Parquet cache.

API
---
``TaobaoReader(path, cache_dir, *, bounds=None, batch_size=2_000_000, window=PlausibleWindow(),
session_gap=timedelta(minutes=30), log=None)`` implements ``DatasetReader`` (name "taobao").

Input: headerless ``user_id,item_id,category_id,behavior_type,timestamp`` with behavior_type in
pv|cart|fav|buy (-> event_type view|cart|fav|buy, value 1.0) and unix seconds. The first use makes
one streaming pass over the file in batches of ``batch_size`` lines (never the whole file in
memory), writing parsed lines (raw line kept) to ``cache_dir/taobao-<hash>/days/<date>.parquet``
with ``manifest.json`` (source size/mtime, per-day row counts, batch sizes). Later readers, and
every window, read only their days. A changed source file rebuilds the cache.

Bounds: ``bounds`` if given, else ``plausible_window(day_counts, window)`` (recsys.sources.lines:
the valid rows' 1%/99% day quantiles, padded, shrunk to days with rows), so the stray 1970/2037
timestamps of the real file become quarantine ("timestamp_out_of_range: event_date ... outside the
plausible window ...") instead of stretching the partition range over decades. Note the file's days
are UTC; the official 2017-11-25..12-03 range is China time, so its UTC bounds start 2017-11-24.

session_id: per user and UTC day, a new session after ``session_gap`` of inactivity; the id is a
hash of (user_id, session start second), so it is the same whichever window reads the day.
``items()``: item_id, category_id (first seen in the file), title (null). ``users()``: user_id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from recsys.sources import SourceError
from recsys.sources.lines import (
    DayCache,
    Field,
    LineFormat,
    LineSourceReader,
    PlausibleWindow,
    plausible_window,
    scan_raw_lines,
    source_fingerprint,
)

BEHAVIORS = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}
TAOBAO_FIELDS: tuple[Field, ...] = (
    Field("user_id", "id"),
    Field("item_id", "id"),
    Field("category_id", "id"),
    Field("event_type", "enum", label="behavior_type", choices=BEHAVIORS),
    Field("ts", "unix_ts", label="timestamp"),
)


def taobao_format(extra: tuple[Field, ...] = ()) -> LineFormat:
    """The Taobao CSV line format; ``extra`` trailing fields (the synthetic source adds session_id)."""
    return LineFormat(",", TAOBAO_FIELDS + extra, value=1.0)


class TaobaoReader(LineSourceReader):
    def __init__(
        self,
        path: Path,
        cache_dir: Path,
        *,
        bounds: tuple[date, date] | None = None,
        batch_size: int = 2_000_000,
        window: PlausibleWindow | None = None,
        session_gap: timedelta = timedelta(minutes=30),
        log: Callable[[str], None] | None = None,
    ):
        path = Path(path)
        if not path.is_file():
            raise SourceError(
                f"{path}: Taobao file not found; expected a headerless CSV of"
                " user_id,item_id,category_id,behavior_type(pv|cart|fav|buy),unix_ts"
            )
        key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        cache = DayCache.open_or_build(
            scan_raw_lines(path),
            taobao_format(),
            Path(cache_dir) / f"taobao-{key}",
            source_fingerprint(path),
            batch_size=batch_size,
            log=log,
        )
        rule = None if bounds else (window or PlausibleWindow())
        declared = bounds or plausible_window(cache.day_counts(), rule)
        super().__init__("taobao", str(path), cache, declared, session_gap=session_gap, rule=rule)
        self.cache = cache
        self._items: pl.DataFrame | None = None
        self._users: pl.DataFrame | None = None

    def _valid_rows(self) -> pl.LazyFrame:
        lo, hi = self.bounds
        return self.cache.scan_days(lo, hi).filter(pl.col("reason").is_null())

    def items(self) -> pl.DataFrame:
        if self._items is None:
            self._items = (
                self._valid_rows()
                .group_by("item_id")
                .agg(pl.col("category_id").sort_by("line_no").first())
                .with_columns(pl.lit(None, dtype=pl.Utf8).alias("title"))
                .sort("item_id")
                .collect(engine="streaming")
            )
        return self._items

    def users(self) -> pl.DataFrame:
        if self._users is None:
            self._users = self._valid_rows().select("user_id").unique().sort("user_id").collect(engine="streaming")
        return self._users
