"""A landing folder: files dropped into one directory become events (live mode).

API
---
``LandingReader(folder, cache_dir, *, rule=PlausibleWindow(), today=None, session_gap=30 min)``
implements ``DatasetReader`` (name "landing") over every event file in ``folder``:

- ``*.csv``: Taobao UserBehavior lines (headerless ``user_id,item_id,category_id,behavior,unix_ts``);
- ``*.inter``: a RecBole atomic file (``user_id:token item_id:token [rating:float] timestamp:float``,
  e.g. MovieLens as RecBole ships it);
- ``*.parquet``: columns ``user_id``, ``item_id``, ``timestamp`` (unix seconds, or a datetime) and
  optionally ``event_type`` (one of ``recsys.schema.EVENT_TYPES``, default ``view``), ``value``
  (default 1.0) and ``category_id``. Each row is rendered as one comma-separated line and checked
  by the same ``LineFormat`` rules as the text formats, so a bad row is quarantined, not dropped.

``items.parquet`` and ``users.parquet`` are the catalogue, not events (``CATALOG_FILES``). Names
starting with ``.`` or ``_`` are ignored: write a file under such a name and rename it into place,
so a reader never sees half a file.

A file may hold one day or many. Each file is parsed once into its own per-day Parquet cache
(``recsys.sources.lines.DayCache``, keyed by path, size and mtime): a changed file rebuilds only its
own cache. ``file_fingerprints()`` gives ``{name: "size-mtime_ns"}``, what the landing sensor keeps
in its cursor.

Days. The plausible window (``recsys.sources.lines.plausible_window``) is computed over the
day counts of all files together and never reaches past ``today`` + 1 day. ``days()`` are the days
inside it that hold any row (a day of only bad rows is a day whose checks fail, not a lost day):
the partition keys. Every line of a file is read by exactly one day:

- a row whose day is inside the window belongs to that day, loaded or quarantined;
- every other line (timestamp out of range, unparsable, empty) is quarantined in the file's
  *home day*, the day inside the window where the file has the most valid rows (``home_day``), so
  a broken file shows up in the quality checks of the day it was meant for.

A file with no valid row inside the window has no home day: ``unroutable_files()`` lists it, and
the landing sensor raises an alert for it instead of loading it.

``seq`` (the tie-break of the event order) is the line number in the file plus the file's id
(CRC-32 of its name, 31 bits) shifted left by 32 bits: stable whatever else lands.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from recsys.schema import EVENT_TYPES
from recsys.sources import ParsedBatch, SourceError
from recsys.sources.lines import (
    DayCache,
    Field,
    LineFormat,
    PlausibleWindow,
    finalize,
    lines_frame,
    plausible_window,
    route,
    scan_raw_lines,
    sessionize,
    source_fingerprint,
)
from recsys.sources.recbole import _header, inter_format
from recsys.sources.taobao import taobao_format

EVENT_SUFFIXES = {".csv": "taobao", ".inter": "recbole", ".parquet": "parquet"}
CATALOG_FILES = ("items.parquet", "users.parquet")
PARQUET_FORMAT = LineFormat(
    ",",
    (
        Field("user_id", "id"),
        Field("item_id", "id"),
        Field("category_id", "any"),
        Field("event_type", "enum", choices={t: t for t in EVENT_TYPES}),
        Field("value", "float"),
        Field("ts", "unix_ts", label="timestamp"),
    ),
)
FILE_ID_SHIFT = 32


@dataclass(frozen=True)
class LandingFile:
    path: Path
    kind: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def file_id(self) -> int:
        return zlib.crc32(self.name.encode()) & 0x7FFFFFFF

    def fingerprint(self) -> str:
        st = self.path.stat()
        return f"{st.st_size}-{st.st_mtime_ns}"


def list_landing_files(folder: Path) -> list[LandingFile]:
    """Event files in ``folder`` (not recursive), by name; catalogue and hidden files excluded."""
    out = []
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.name.startswith((".", "_")) or path.name in CATALOG_FILES:
            continue
        kind = EVENT_SUFFIXES.get(path.suffix.lower())
        if kind is not None:
            out.append(LandingFile(path, kind))
    return out


def _parquet_lines(path: Path) -> pl.LazyFrame:
    frame = pl.read_parquet(path)
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in frame.columns]
    if missing:
        raise SourceError(
            f"{path}: Parquet landing file lacks columns {missing}; expected user_id, item_id, timestamp[, event_type, value, category_id]"
        )
    ts = pl.col("timestamp")
    if frame.schema["timestamp"].is_temporal():
        ts = ts.cast(pl.Datetime("us")).dt.epoch("us") / 1_000_000
    text = [
        pl.col("user_id").cast(pl.Utf8),
        pl.col("item_id").cast(pl.Utf8),
        pl.col("category_id").cast(pl.Utf8) if "category_id" in frame.columns else pl.lit(""),
        pl.col("event_type").cast(pl.Utf8) if "event_type" in frame.columns else pl.lit("view"),
        pl.col("value").cast(pl.Utf8) if "value" in frame.columns else pl.lit("1.0"),
        ts.cast(pl.Utf8),
    ]
    rendered = frame.select(pl.concat_str([e.fill_null("") for e in text], separator=",").alias("raw_line"))
    return lines_frame(rendered["raw_line"])


def _lines_and_format(file: LandingFile) -> tuple[pl.LazyFrame, LineFormat]:
    if file.kind == "taobao":
        return scan_raw_lines(file.path), taobao_format()
    if file.kind == "recbole":
        return scan_raw_lines(file.path, header=True), inter_format(_header(file.path), path=file.path)
    return _parquet_lines(file.path), PARQUET_FORMAT


def _open_cache(file: LandingFile, cache_dir: Path, log: Callable[[str], None] | None) -> DayCache:
    key = f"{file.file_id:08x}-{file.path.stem[:40]}"
    lines, fmt = _lines_and_format(file)
    root = Path(cache_dir) / "landing-files" / key
    try:
        return DayCache.open_or_build(lines, fmt, root, source_fingerprint(file.path), log=log)
    except OSError:
        # another process (the sensor or a run) finished the same cache first: use it
        return DayCache.open_or_build(lines, fmt, root, source_fingerprint(file.path), log=log)


def home_day(day_counts: pl.DataFrame, window: tuple[date, date] | None) -> date | None:
    """The day inside ``window`` where a file has the most valid rows (earliest on a tie)."""
    if window is None:
        return None
    inside = day_counts.filter(pl.col("event_date").is_between(*window) & (pl.col("n_valid") > 0))
    if inside.is_empty():
        return None
    return inside.sort(["n_valid", "event_date"], descending=[True, False])["event_date"][0]


class LandingReader:
    """``DatasetReader`` over a landing folder (see module docstring)."""

    def __init__(
        self,
        folder: Path,
        cache_dir: Path,
        *,
        rule: PlausibleWindow | None = None,
        today: date | None = None,
        session_gap: timedelta | None = timedelta(minutes=30),
        log: Callable[[str], None] | None = None,
    ):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: landing folder not found; expected a directory of *.csv, *.inter or *.parquet event files")
        self.name = "landing"
        self.session_gap = session_gap
        self.files = list_landing_files(self.folder)
        self.caches = {f.name: _open_cache(f, Path(cache_dir), log) for f in self.files}
        counts = [c.day_counts() for c in self.caches.values()]
        self.day_totals = (
            pl.concat(counts).group_by("event_date").agg(pl.col("n_rows").sum(), pl.col("n_valid").sum()).sort("event_date")
            if counts
            else pl.DataFrame(schema={"event_date": pl.Date, "n_rows": pl.Int64, "n_valid": pl.Int64})
        )
        window = plausible_window(self.day_totals, rule or PlausibleWindow())
        latest = (today or datetime.now(UTC).date()) + timedelta(days=1)
        if window is not None and window[0] <= latest:
            window = (window[0], min(window[1], latest))
        else:
            window = None
        self.window = window
        self.homes = {name: home_day(cache.day_counts(), window) for name, cache in self.caches.items()}

    # --- what has landed -----------------------------------------------------------------
    def file_fingerprints(self) -> dict[str, str]:
        return {f.name: f.fingerprint() for f in self.files}

    def days(self) -> list[date]:
        if self.window is None:
            return []
        inside = self.day_totals.filter(pl.col("event_date").is_between(*self.window) & (pl.col("n_rows") > 0))
        return inside["event_date"].to_list()

    def file_days(self, name: str) -> list[date]:
        """The days a file contributes to: its valid days inside the window and its home day."""
        home = self.homes.get(name)
        if home is None:
            return []
        counts = self.caches[name].day_counts()
        days = set(counts.filter(pl.col("event_date").is_between(*self.window) & (pl.col("n_rows") > 0))["event_date"].to_list())
        return sorted(days | {home})

    def unroutable_files(self) -> list[str]:
        return [name for name, home in self.homes.items() if home is None]

    def date_bounds(self) -> tuple[date, date]:
        days = self.days()
        if not days:
            raise SourceError(f"{self.folder}: no valid event rows in any landing file yet")
        return days[0], days[-1]

    # --- DatasetReader -------------------------------------------------------------------
    def read_window(self, start: date, end: date) -> ParsedBatch:
        if self.window is None:
            return ParsedBatch.empty()
        lo, hi = self.window
        batches = []
        for file in self.files:
            cache, home = self.caches[file.name], self.homes[file.name]
            if home is None:
                continue
            parts = [cache.scan_days(max(start, lo), min(end, hi))]
            if start <= home <= end:
                parts.append(cache.scan_outside(lo, hi))
            raw = pl.concat(parts, how="diagonal_relaxed").collect()
            if raw.is_empty():
                continue
            routed = route(raw.lazy(), self.window).with_columns(
                pl.when(pl.col("reason").is_not_null() & ~pl.col("event_date").is_between(lo, hi).fill_null(False))
                .then(pl.lit(home.isoformat()))
                .otherwise(pl.col("partition"))
                .alias("partition")
            )
            batch = finalize(routed.collect(), source_name=self.name, source_path=str(file.path))
            shifted = batch.interactions.with_columns(pl.col("seq") + (file.file_id << FILE_ID_SHIFT))
            batches.append(ParsedBatch(shifted, batch.quarantine, batch.n_read))
        merged = ParsedBatch.concat(batches)
        interactions = merged.interactions.sort("ts", "seq")
        if self.session_gap is not None:
            interactions = sessionize(interactions, self.session_gap)
        return ParsedBatch(interactions, merged.quarantine, merged.n_read)

    def _valid_rows(self, columns: list[str]) -> pl.LazyFrame:
        if self.window is None or not self.caches:
            return pl.LazyFrame(schema={c: pl.Int64 for c in columns})
        scans = []
        for cache in self.caches.values():
            scan = cache.scan_days(*self.window).filter(pl.col("reason").is_null())
            names = scan.collect_schema().names()
            scans.append(
                scan.select([pl.col(c).cast(pl.Int64, strict=False) if c in names else pl.lit(None, pl.Int64).alias(c) for c in columns])
            )
        return pl.concat(scans, how="vertical")

    def items(self) -> pl.DataFrame:
        path = self.folder / "items.parquet"
        if path.is_file():
            frame = pl.read_parquet(path)
            if "item_id" not in frame.columns:
                raise SourceError(f"{path}: catalogue lacks column item_id")
            extra = [pl.lit(None, dtype=pl.Int64).alias("category_id")] if "category_id" not in frame.columns else []
            extra += [pl.lit(None, dtype=pl.Utf8).alias("title")] if "title" not in frame.columns else []
            known = frame.with_columns(pl.col("item_id").cast(pl.Int64), *extra)
        else:
            known = pl.DataFrame(schema={"item_id": pl.Int64, "category_id": pl.Int64, "title": pl.Utf8})
        seen = (
            self._valid_rows(["item_id", "category_id"])
            .group_by("item_id")
            .agg(pl.col("category_id").drop_nulls().first())
            .collect()
            .join(known.select("item_id"), on="item_id", how="anti")
            .with_columns(pl.lit(None, dtype=pl.Utf8).alias("title"))
        )
        return pl.concat([known, seen], how="diagonal_relaxed").sort("item_id")

    def users(self) -> pl.DataFrame:
        path = self.folder / "users.parquet"
        known = (
            pl.read_parquet(path).with_columns(pl.col("user_id").cast(pl.Int64))
            if path.is_file()
            else pl.DataFrame(schema={"user_id": pl.Int64})
        )
        seen = self._valid_rows(["user_id"]).unique().collect().join(known.select("user_id"), on="user_id", how="anti")
        return pl.concat([known, seen], how="diagonal_relaxed").sort("user_id")


__all__ = ["LandingReader", "LandingFile", "list_landing_files", "home_day", "CATALOG_FILES", "EVENT_SUFFIXES"]
