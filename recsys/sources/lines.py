"""Raw-line parsing with row validation and quarantine, shared by every interaction source.

API
---
- ``scan_raw_lines(path, header=False) -> LazyFrame[line_no Int64, raw_line Utf8]``: one string column
  per physical line (1-based line numbers; a blank line has raw_line null), never interpreting quotes.
- ``lines_frame(raw: pl.Series) -> LazyFrame`` the same for lines rendered in memory.
- ``Field`` / ``LineFormat``: a delimited record layout. ``LineFormat.parse(lines)`` adds the typed
  columns (user_id, item_id, event_type, value, ts, event_date, plus extra fields) and ``reason``
  (null when the line loads; otherwise the first failing check, e.g. "column count 3, expected 5",
  "user_id 'abc' is not an integer", "behavior_type 'zz' not in pv|cart|fav|buy").
- ``PlausibleWindow(quantile=0.01, pad_fraction=0.25, min_pad_days=2, lo=None, hi=None)`` (frozen)
  and ``plausible_window(day_counts, rule) -> tuple[date, date] | None``: the partition bounds of a
  source from its ``ParsedStore.day_counts()`` (event_date, n_rows, n_valid): the rows' 1%/99% day
  quantiles padded by max(2 days, 25% of their span), shrunk to the first/last day with valid rows;
  ``lo``/``hi`` set an explicit window. A few stray rows (epoch, 2038) cannot stretch it.
- ``route(parsed, bounds, *, file_day=None, rule=None) -> LazyFrame`` adds the bound/day-file checks
  and ``partition``: the event_date ISO string, the day file's day when lines come from a per-day
  file, else "unroutable" (timestamp unparsable or outside the bounds). ``rule`` is the
  PlausibleWindow that chose ``bounds``, named in the reason.
- Timestamp reasons: every stamp that parses as a number but is implausible starts with
  ``TS_OUT_OF_RANGE + ": "``: "timestamp_out_of_range: -5 is negative", "...: 1511544070000 is past
  2100-01-01 in unix seconds (milliseconds?)", "...: event_date 1970-01-01 outside the plausible
  window [2017-11-24, 2017-12-03] (1%/99% day quantiles padded by ...)"; a non-number keeps
  "timestamp 'abc' is not a unix time".
- ``finalize(routed, source_name, session_gap=None) -> ParsedBatch``.
- ``InMemoryStore`` and ``DayCache`` (Parquet per event_date, built in one streaming pass of
  bounded batches; a day of large batches keeps its part files rather than being rewritten as one)
  hold parsed lines; ``LineSourceReader`` implements ``date_bounds``/``read_window``
  on top of either.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from recsys.schema import INTERACTION_SCHEMA, QUARANTINE_SCHEMA
from recsys.sources import UNROUTABLE, ParsedBatch, SourceError

RAW_SEPARATOR = "\x1f"  # ASCII unit separator: never in our text formats, so a line stays one field
TS_MAX_SECONDS = 4_102_444_800  # 2100-01-01: later unix times are corrupt, not future data
TS_OUT_OF_RANGE = "timestamp_out_of_range"  # reason prefix of every implausible or unrepresentable stamp
CACHE_FORMAT_VERSION = 3  # 2: timestamp reasons start with TS_OUT_OF_RANGE; 3: lz4, a day may be several part files
CACHE_COMPRESSION = "lz4"  # the cache is rewritten from the source at will: fast to write and read beats small
COMPACT_BELOW_ROWS = 100_000  # a day's parts are merged into one file only when they average fewer rows

LINE_COLUMNS = ("line_no", "raw_line")


def scan_raw_lines(path: Path, *, header: bool = False) -> pl.LazyFrame:
    """Lines of ``path`` as (line_no Int64, raw_line Utf8); ``header=True`` drops line 1."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    lines = pl.scan_csv(
        path,
        has_header=False,
        separator=RAW_SEPARATOR,
        quote_char=None,
        schema={"raw_line": pl.Utf8},
        encoding="utf8-lossy",
        row_index_name="line_no",
        row_index_offset=1,
        empty_string_is_null=True,
    ).with_columns(pl.col("line_no").cast(pl.Int64))
    if header:
        lines = lines.filter(pl.col("line_no") > 1)
    return lines.select(LINE_COLUMNS)


def lines_frame(raw: pl.Series) -> pl.LazyFrame:
    """Rendered lines (e.g. synthetic CSV) as (line_no, raw_line), numbered from 1."""
    return (
        pl.DataFrame({"raw_line": raw.cast(pl.Utf8)})
        .lazy()
        .with_row_index("line_no", offset=1)
        .select(pl.col("line_no").cast(pl.Int64), "raw_line")
    )


@dataclass(frozen=True)
class Field:
    """One delimited field. kind: id (non-negative Int64), float, unix_ts, enum (choices maps raw
    token -> stored value), str (non-empty), any (unchecked). ``label`` names it in reasons (defaults to ``name``)."""

    name: str
    kind: str
    label: str | None = None
    lo: float | None = None
    hi: float | None = None
    choices: Mapping[str, str] | None = None

    @property
    def shown(self) -> str:
        return self.label or self.name


def _fmt_num(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class LineFormat:
    """A delimited interaction record. ``event_type``/``value`` are constants used when no field
    of that name exists (MovieLens: "rate"; Taobao: value 1.0)."""

    separator: str
    fields: tuple[Field, ...]
    event_type: str | None = None
    value: float | None = None

    def parse(self, lines: pl.LazyFrame) -> pl.LazyFrame:
        """Typed columns + ts/event_date + reason for (line_no, raw_line) lines; vectorized."""
        k = len(self.fields)
        parts = pl.col("raw_line").str.split(self.separator)
        raw_cols = [parts.list.get(j, null_on_oob=True).str.strip_chars().alias(f"__raw_{f.name}") for j, f in enumerate(self.fields)]
        staged = lines.with_columns(parts.list.len().alias("__n_cols"), *raw_cols)

        typed: list[pl.Expr] = []
        checks: list[tuple[pl.Expr, pl.Expr]] = [
            (pl.col("raw_line").is_null() | (pl.col("raw_line").str.strip_chars() == ""), pl.lit("empty line")),
            (
                pl.col("__n_cols") != k,
                pl.format("column count {}, expected {}", pl.col("__n_cols"), pl.lit(k)),
            ),
        ]
        for f in self.fields:
            raw = pl.col(f"__raw_{f.name}")
            out = pl.col(f.name)
            if f.kind == "id":
                typed.append(raw.cast(pl.Int64, strict=False).alias(f.name))
                checks += [
                    (out.is_null(), pl.format("{} '{}' is not an integer", pl.lit(f.shown), raw)),
                    (out < 0, pl.format("{} {} is negative", pl.lit(f.shown), out)),
                ]
            elif f.kind == "float":
                typed.append(raw.cast(pl.Float64, strict=False).alias(f.name))
                checks.append((out.is_null() | ~out.is_finite(), pl.format("{} '{}' is not a number", pl.lit(f.shown), raw)))
                if f.lo is not None or f.hi is not None:
                    lo = -np.inf if f.lo is None else f.lo
                    hi = np.inf if f.hi is None else f.hi
                    checks.append(
                        (
                            (out < lo) | (out > hi),
                            pl.format(
                                "{} {} outside [{}, {}]",
                                pl.lit(f.shown),
                                raw,
                                pl.lit(_fmt_num(lo)),
                                pl.lit(_fmt_num(hi)),
                            ),
                        )
                    )
            elif f.kind == "unix_ts":
                typed.append(raw.cast(pl.Float64, strict=False).alias(f"__secs_{f.name}"))
                secs = pl.col(f"__secs_{f.name}")
                checks += [
                    (secs.is_null() | ~secs.is_finite(), pl.format("{} '{}' is not a unix time", pl.lit(f.shown), raw)),
                    (secs < 0, pl.format(TS_OUT_OF_RANGE + ": {} is negative", raw)),
                    (
                        secs >= TS_MAX_SECONDS,
                        pl.format(
                            TS_OUT_OF_RANGE + ": {} is past 2100-01-01 in unix seconds{}",
                            raw,
                            pl.when(secs < TS_MAX_SECONDS * 1000)
                            .then(pl.lit(" (milliseconds?)"))
                            .when(secs < TS_MAX_SECONDS * 1_000_000)
                            .then(pl.lit(" (microseconds?)"))
                            .otherwise(pl.lit("")),
                        ),
                    ),
                ]
            elif f.kind == "enum":
                assert f.choices is not None, f"enum field {f.name} needs choices"
                typed.append(raw.replace_strict(dict(f.choices), default=None, return_dtype=pl.Utf8).alias(f.name))
                allowed = "|".join(f.choices)
                checks.append((out.is_null(), pl.format("{} '{}' not in {}", pl.lit(f.shown), raw, pl.lit(allowed))))
            elif f.kind == "any":
                typed.append(raw.alias(f.name))  # carried unchecked (e.g. extra RecBole columns)
            elif f.kind == "str":
                typed.append(raw.alias(f.name))
                checks.append((out.is_null() | (out == ""), pl.format("{} is empty", pl.lit(f.shown))))
            else:
                raise ValueError(f"unknown field kind {f.kind!r} for {f.name}")

        ts_fields = [f for f in self.fields if f.kind == "unix_ts"]
        if len(ts_fields) != 1:
            raise ValueError(f"a LineFormat needs exactly one unix_ts field, got {len(ts_fields)}")
        secs = pl.col(f"__secs_{ts_fields[0].name}")
        ts_ok = secs.is_finite() & (secs >= 0) & (secs < TS_MAX_SECONDS)
        ts = pl.when(ts_ok).then((secs * 1_000_000).round().cast(pl.Int64)).cast(pl.Datetime("us"))

        reason = pl.when(checks[0][0]).then(checks[0][1])
        for cond, text in checks[1:]:
            reason = reason.when(cond).then(text)
        reason = reason.otherwise(pl.lit(None, dtype=pl.Utf8))

        names = [f.name for f in self.fields if f.kind != "unix_ts"]
        constants = []
        if "event_type" not in names:
            constants.append(pl.lit(self.event_type, dtype=pl.Utf8).alias("event_type"))
        if "value" not in names:
            constants.append(pl.lit(self.value, dtype=pl.Float64).alias("value"))
        return (
            staged.with_columns(typed)
            .with_columns(ts.alias("ts"), *constants)
            .with_columns(pl.col("ts").dt.date().alias("event_date"), reason.alias("reason"))
            .select(
                "line_no",
                "raw_line",
                *[n for n in names if n not in ("event_type", "value")],
                "event_type",
                "value",
                "ts",
                "event_date",
                "reason",
            )
        )


def route(
    parsed: pl.LazyFrame,
    bounds: tuple[date, date] | None,
    *,
    file_day: date | None = None,
    rule: PlausibleWindow | None = None,
) -> pl.LazyFrame:
    """Add day checks to ``reason`` and the ``partition`` column (see module docstring).

    A dated line outside ``bounds`` gets "timestamp_out_of_range: event_date D outside the plausible
    window [lo, hi] (<rule.describe()>)" when ``rule`` (the rule that chose ``bounds``) is given,
    else "... outside the declared bounds [lo, hi]"."""
    ed = pl.col("event_date")
    checks: list[tuple[pl.Expr, pl.Expr]] = []
    if file_day is not None:
        checks.append(
            (
                ed.is_not_null() & (ed != file_day),
                pl.format(
                    "ts {} outside partition {}",
                    pl.col("ts").dt.to_string("%Y-%m-%d %H:%M:%S"),
                    pl.lit(file_day.isoformat()),
                ),
            )
        )
    if bounds is not None:
        lo, hi = bounds
        what = "declared bounds" if rule is None else "plausible window"
        why = "" if rule is None else f" ({rule.describe()})"
        checks.append(
            (
                ed.is_not_null() & ((ed < lo) | (ed > hi)),
                pl.format(
                    TS_OUT_OF_RANGE + ": event_date {} outside the " + what + " [{}, {}]" + why,
                    ed.dt.to_string("%Y-%m-%d"),
                    pl.lit(lo.isoformat()),
                    pl.lit(hi.isoformat()),
                ),
            )
        )
    reason = pl.col("reason")
    if checks:
        extra = pl.when(checks[0][0]).then(checks[0][1])
        for cond, text in checks[1:]:
            extra = extra.when(cond).then(text)
        reason = pl.coalesce(reason, extra.otherwise(pl.lit(None, dtype=pl.Utf8)))
    if file_day is not None:
        partition = pl.lit(file_day.isoformat())
    else:
        in_bounds = ed.is_not_null()
        if bounds is not None:
            in_bounds = in_bounds & (ed >= bounds[0]) & (ed <= bounds[1])
        partition = pl.when(in_bounds).then(ed.dt.to_string("%Y-%m-%d")).otherwise(pl.lit(UNROUTABLE))
    return parsed.with_columns(reason.alias("reason"), partition.alias("partition"))


def _mix64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """splitmix64 of (a, b) -> non-negative int64: a stable id that needs no shared counter."""
    with np.errstate(over="ignore"):
        x = a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ b.astype(np.uint64)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(1)).astype(np.int64)


def sessionize(interactions: pl.DataFrame, gap: timedelta) -> pl.DataFrame:
    """session_id per user and UTC day, split at inactivity gaps > ``gap``; id = hash(user, start).

    Sessions never cross midnight so a day's ids do not depend on which window read it. Only the
    three key columns are sorted (by user, ts, row); the ids are scattered back to the rows' order."""
    if interactions.height == 0:
        return interactions
    order = interactions.select("user_id", "ts", "event_date").with_row_index("__pos").sort("user_id", "ts", "__pos")
    same = (
        (pl.col("user_id") == pl.col("user_id").shift())
        & (pl.col("event_date") == pl.col("event_date").shift())
        & ((pl.col("ts") - pl.col("ts").shift()) <= gap)
    )
    # rows of a session are contiguous in this order: its start is the last segment-opening stamp
    start = pl.when(~same.fill_null(False)).then(pl.col("ts").dt.epoch("s")).forward_fill()
    order = order.select("__pos", "user_id", start.alias("__start"))
    sid = np.empty(interactions.height, dtype=np.int64)
    sid[order["__pos"].to_numpy()] = _mix64(order["user_id"].to_numpy(), order["__start"].to_numpy())
    return interactions.with_columns(pl.Series("session_id", sid, dtype=pl.Int64))


def finalize(
    routed: pl.DataFrame | pl.LazyFrame,
    *,
    source_name: str,
    source_path: str,
    session_gap: timedelta | None = None,
) -> ParsedBatch:
    """Split routed lines into interactions (sorted by ts, line_no) and quarantine.

    The line number becomes the event's ``seq``: its position in the source, which breaks ties of
    equal timestamps in the canonical event order (ts, seq)."""
    lazy = routed.lazy()
    return _finalize(
        lazy.filter(pl.col("reason").is_null()),
        lazy.filter(pl.col("reason").is_not_null()),
        source_name=source_name,
        source_path=source_path,
        session_gap=session_gap,
    )


def _finalize(
    good: pl.LazyFrame,
    bad: pl.LazyFrame,
    *,
    source_name: str,
    source_path: str,
    session_gap: timedelta | None,
) -> ParsedBatch:
    """``finalize`` of lines already split into loadable (``good``) and quarantined (``bad``) ones.

    Both are lazy, so a Parquet scan reads only the columns each side keeps (the raw line only for
    the quarantined lines) and both run in one ``collect_all``."""
    if "session_id" not in good.collect_schema().names():
        good = good.with_columns(pl.lit(None, dtype=pl.Int64).alias("session_id"))
    good = good.with_columns(pl.col("line_no").alias("seq"), pl.lit(source_name).alias("source")).select(
        [pl.col(c).cast(t) for c, t in INTERACTION_SCHEMA.items()]
    )
    bad = (
        bad.with_columns(pl.lit(source_path).alias("source"), pl.col("raw_line").fill_null(""))
        .select([pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()])
        .sort("line_no")
    )
    interactions, quarantine = pl.collect_all([good, bad])
    if session_gap is not None:  # in source order, which logs sorted by user keep nearly sorted for it
        interactions = sessionize(interactions, session_gap)
    interactions = interactions.sort("ts", "seq")
    return ParsedBatch(interactions, quarantine, interactions.height + quarantine.height)


class ParsedStore(Protocol):
    """Parsed lines (LineFormat.parse output) addressable by event_date."""

    def scan_days(self, start: date, end: date) -> pl.LazyFrame: ...
    def scan_outside(self, lo: date, hi: date) -> pl.LazyFrame: ...  # dated rows outside [lo, hi] and undated rows
    def day_counts(self) -> pl.DataFrame: ...  # event_date Date, n_rows, n_valid


_COUNT_AGGS = (
    pl.len().cast(pl.Int64).alias("n_rows"),
    pl.col("reason").is_null().sum().cast(pl.Int64).alias("n_valid"),
)


class InMemoryStore:
    """Small sources: the whole parsed frame lives in the reader."""

    def __init__(self, parsed: pl.DataFrame):
        self.parsed = parsed

    def scan_days(self, start: date, end: date) -> pl.LazyFrame:
        return self.parsed.lazy().filter(pl.col("event_date").is_between(start, end))

    def scan_outside(self, lo: date, hi: date) -> pl.LazyFrame:
        return self.parsed.lazy().filter(~pl.col("event_date").is_between(lo, hi).fill_null(False))

    def day_counts(self) -> pl.DataFrame:
        return self.parsed.filter(pl.col("event_date").is_not_null()).group_by("event_date").agg(*_COUNT_AGGS).sort("event_date")


def source_fingerprint(path: Path) -> dict:
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class DayCache:
    """Parsed lines as one Parquet file per event_date (+ ``undated.parquet``) under ``root``.

    ``manifest.json`` is written last: its presence with a matching fingerprint means complete."""

    root: Path
    manifest: dict = field(default_factory=dict)

    @staticmethod
    def open_or_build(
        lines: pl.LazyFrame,
        fmt: LineFormat,
        root: Path,
        fingerprint: dict,
        *,
        batch_size: int = 2_000_000,
        log: Callable[[str], None] | None = None,
    ) -> DayCache:
        root = Path(root)
        manifest_path = root / "manifest.json"
        wanted = {"fingerprint": fingerprint, "format_version": CACHE_FORMAT_VERSION, "format": repr(fmt)}
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            if all(manifest.get(k) == v for k, v in wanted.items()):
                return DayCache(root, manifest)
        return DayCache._build(lines, fmt, root, wanted, batch_size=batch_size, log=log)

    @staticmethod
    def _build(lines, fmt, root, wanted, *, batch_size, log) -> DayCache:
        tmp = root.parent / f".{root.name}.building-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "parts").mkdir(parents=True)
        batch_rows: list[int] = []
        counts: list[pl.DataFrame] = []
        parsed = fmt.parse(lines)
        # one streaming pass: each batch is split by day and appended as a part file
        for b, batch in enumerate(parsed.collect_batches(chunk_size=batch_size)):
            batch_rows.append(batch.height)
            key = batch.with_columns(pl.col("event_date").dt.to_string("%Y-%m-%d").fill_null("undated").alias("__day"))
            counts.append(key.group_by("__day").agg(*_COUNT_AGGS))
            for (day,), part in key.partition_by("__day", as_dict=True, include_key=False).items():
                (tmp / "parts" / day).mkdir(exist_ok=True)
                part.write_parquet(tmp / "parts" / day / f"{b:06d}.parquet", compression=CACHE_COMPRESSION)
            if log is not None:
                log(f"day cache {root.name}: batch {b} ({sum(batch_rows):,} lines)")
        (tmp / "days").mkdir()
        rows_of = dict(pl.concat(counts).group_by("__day").agg(pl.col("n_rows").sum()).iter_rows()) if counts else {}
        files: dict[str, list[str]] = {}
        for day_dir in sorted((tmp / "parts").iterdir()):
            parts = sorted(day_dir.glob("*.parquet"))
            single = "undated.parquet" if day_dir.name == "undated" else f"days/{day_dir.name}.parquet"
            if len(parts) == 1:  # one batch held the day: its part is the day file as it is
                parts[0].rename(tmp / single)
                files[day_dir.name] = [single]
            elif rows_of.get(day_dir.name, 0) / len(parts) < COMPACT_BELOW_ROWS:  # many small parts: merge them
                pl.scan_parquet(parts).sink_parquet(tmp / single, compression=CACHE_COMPRESSION)
                files[day_dir.name] = [single]
            else:  # large parts (a day of a big file): keep them, in line order, instead of rewriting the day
                kept = tmp / "days" / day_dir.name
                kept.mkdir()
                for part in parts:
                    part.rename(kept / part.name)
                files[day_dir.name] = [f"days/{day_dir.name}/{part.name}" for part in parts]
            shutil.rmtree(day_dir)
        shutil.rmtree(tmp / "parts")
        day_counts = (
            pl.concat(counts).group_by("__day").agg(pl.col("n_rows").sum(), pl.col("n_valid").sum()).sort("__day")
            if counts
            else pl.DataFrame(schema={"__day": pl.Utf8, "n_rows": pl.Int64, "n_valid": pl.Int64})
        )
        manifest = dict(wanted)
        manifest.update(
            n_read=int(sum(batch_rows)),
            batch_size=batch_size,
            batch_rows=batch_rows,
            days={r["__day"]: [r["n_rows"], r["n_valid"]] for r in day_counts.iter_rows(named=True)},
            files=files,
        )
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(root)
        return DayCache(root, manifest)

    def _files(self, day: str) -> list[Path]:
        return [self.root / f for f in self.manifest["files"][day]]

    def _day_files(self, keep: Callable[[date], bool]) -> list[Path]:
        return [f for d in self.manifest["days"] if d != "undated" and keep(date.fromisoformat(d)) for f in self._files(d)]

    def _scan(self, files: list[Path]) -> pl.LazyFrame:
        if not files:
            return pl.LazyFrame(schema=self._schema())
        return pl.scan_parquet(files)

    def _schema(self) -> dict:
        return dict(pl.read_parquet_schema(self._files(next(iter(self.manifest["files"])))[0]))

    def scan_days(self, start: date, end: date) -> pl.LazyFrame:
        return self._scan(self._day_files(lambda d: start <= d <= end))

    def scan_outside(self, lo: date, hi: date) -> pl.LazyFrame:
        files = self._day_files(lambda d: d < lo or d > hi)
        if "undated" in self.manifest["days"]:
            files += self._files("undated")
        return self._scan(files)

    def day_counts(self) -> pl.DataFrame:
        rows = [(date.fromisoformat(d), v[0], v[1]) for d, v in self.manifest["days"].items() if d != "undated"]
        return pl.DataFrame(rows, schema={"event_date": pl.Date, "n_rows": pl.Int64, "n_valid": pl.Int64}, orient="row").sort("event_date")


@dataclass(frozen=True)
class PlausibleWindow:
    """Which days of a source are plausible event days: the rule behind ``plausible_window``.

    Default: the days holding the ``quantile`` and 1 - ``quantile`` points of the valid rows
    (weighted by rows, so a day of 2 stray rows moves them by nothing), padded on each side by
    max(``min_pad_days``, ``pad_fraction`` x the days between them), then shrunk to the first and
    last day with valid rows inside. Outliers below ``quantile`` of the rows on either side
    (1% by default) cannot stretch it; a legitimately sparse tail within the padding is kept
    (ML-100K's 1% / 99% days are 1997-09-21 / 1998-04-18, padded by 53 days: all 215 days kept).
    ``lo`` / ``hi``, when given, replace the computed end(s): an explicit window (the data's
    first/last valid day inside it still bounds the partitions)."""

    quantile: float = 0.01
    pad_fraction: float = 0.25
    min_pad_days: int = 2
    lo: date | None = None
    hi: date | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.quantile < 0.5:
            raise ValueError(f"PlausibleWindow.quantile {self.quantile!r}: expected 0 <= q < 0.5")
        if self.pad_fraction < 0 or self.min_pad_days < 0:
            raise ValueError(
                f"PlausibleWindow padding must be >= 0, got pad_fraction={self.pad_fraction!r}, min_pad_days={self.min_pad_days!r}"
            )
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"PlausibleWindow: lo {self.lo} is after hi {self.hi}")

    def describe(self) -> str:
        """The rule in words, for quarantine reasons: "1%/99% day quantiles padded by max(2 d, 25% of their span)"."""
        if self.lo is not None and self.hi is not None:
            return "explicit window"
        pct = f"{self.quantile * 100:g}%/{(1 - self.quantile) * 100:g}%"
        text = f"{pct} day quantiles padded by max({self.min_pad_days} d, {self.pad_fraction * 100:g}% of their span)"
        if self.lo is not None:
            text = f"explicit start, {text}"
        if self.hi is not None:
            text = f"explicit end, {text}"
        return text


def plausible_window(day_counts: pl.DataFrame, rule: PlausibleWindow | None = None) -> tuple[date, date] | None:
    """First and last day with valid rows inside ``rule``'s window (see ``PlausibleWindow``);
    None when no valid row is inside. ``day_counts``: event_date Date, n_valid (``ParsedStore.day_counts()``)."""
    rule = rule or PlausibleWindow()
    valid = day_counts.filter(pl.col("n_valid") > 0).sort("event_date")
    if valid.height == 0:
        return None
    days = valid["event_date"]
    lo, hi = rule.lo, rule.hi
    if lo is None or hi is None:
        cum = valid["n_valid"].cast(pl.Int64).cum_sum().to_numpy()
        total = float(cum[-1])
        q_lo = days[int(np.searchsorted(cum, rule.quantile * total, side="right"))]
        q_hi = days[int(np.searchsorted(cum, (1.0 - rule.quantile) * total, side="left"))]
        pad = timedelta(days=max(rule.min_pad_days, math.ceil(rule.pad_fraction * (q_hi - q_lo).days)))
        lo = q_lo - pad if lo is None else lo
        hi = q_hi + pad if hi is None else hi
    inside = days.filter(days.is_between(lo, hi))
    if inside.len() == 0:
        return None
    return inside.min(), inside.max()


class LineSourceReader:
    """``DatasetReader`` windows over a ParsedStore; subclasses provide items()/users()."""

    name: str

    def __init__(
        self,
        name: str,
        source_path: str,
        store: ParsedStore,
        bounds: tuple[date, date] | None,
        *,
        session_gap: timedelta | None = None,
        rule: PlausibleWindow | None = None,
    ):
        """``rule``: the PlausibleWindow that chose ``bounds`` (named in quarantine reasons); None
        when ``bounds`` were declared by the caller."""
        self.name = name
        self.source_path = source_path
        self.store = store
        self.session_gap = session_gap
        self.rule = rule
        if bounds is None:
            where = f" inside the plausible window ({rule.describe()})" if rule is not None else ""
            raise SourceError(f"{source_path}: no valid interaction rows{where}, cannot establish date bounds")
        self.bounds = bounds

    def date_bounds(self) -> tuple[date, date]:
        return self.bounds

    def read_window(self, start: date, end: date) -> ParsedBatch:
        lo, hi = self.bounds
        parts = [self.store.scan_days(max(start, lo), min(end, hi))]
        if start <= lo <= end:
            # unroutable lines (no day, or a day outside the bounds) belong to the first partition
            parts.append(self.store.scan_outside(lo, hi))
        rows = pl.concat(parts, how="vertical")
        # a line parsed without a reason and dated inside the bounds is one route() leaves alone: it
        # loads as is (its raw line is never read); only the others go through route()'s checks
        inside = pl.col("event_date").is_between(lo, hi).fill_null(False)
        good = rows.filter(pl.col("reason").is_null() & inside)
        routed = route(rows.filter(pl.col("reason").is_not_null() | ~inside), self.bounds, rule=self.rule)
        return _finalize(
            pl.concat([good, routed.filter(pl.col("reason").is_null()).drop("partition")], how="vertical"),
            routed.filter(pl.col("reason").is_not_null()),
            source_name=self.name,
            source_path=self.source_path,
            session_gap=self.session_gap,
        )


def read_whole(reader, *, chunk_days: int = 31) -> ParsedBatch:
    """Every window of ``reader`` concatenated: what a full backfill would load."""
    lo, hi = reader.date_bounds()
    out, day = [], lo
    while day <= hi:
        end = min(hi, day + timedelta(days=chunk_days - 1))
        out.append(reader.read_window(day, end))
        day = end + timedelta(days=1)
    return ParsedBatch.concat(out)


__all__: Sequence[str] = (
    "Field",
    "LineFormat",
    "DayCache",
    "InMemoryStore",
    "LineSourceReader",
    "PlausibleWindow",
    "TS_OUT_OF_RANGE",
    "finalize",
    "lines_frame",
    "read_whole",
    "route",
    "scan_raw_lines",
    "plausible_window",
    "sessionize",
)
