"""Dataset readers: one interface over MovieLens, RecBole atomic files, Taobao CSV and synthetic data.

API
---
``open_reader(spec: str, cache_dir: Path, *, window: PlausibleWindow | None = None) -> DatasetReader``
parses a source spec for local data (``window``: the plausible-timestamp rule of file sources, see
``recsys.sources.lines.PlausibleWindow``; the synthetic source only emits its own days):

- ``movielens:<dir>``  (also ``movielens-100k:<dir>``, ``ml-1m:<dir>``, ``ml-25m:<dir>`` ...): a local
  MovieLens folder; the layout (ml-100k ``u.data``, RecBole ``<name>.inter``, ml-1m ``ratings.dat``,
  ml-latest/20m/25m ``ratings.csv``) is detected from the files present.
- ``taobao:<file.csv>``: UserBehavior / PI2I-style headerless CSV, streamed into a per-day cache.
- ``landing:<dir>``: a landing folder of event files that grows (live mode, recsys.sources.landing).
- ``synthetic`` or ``synthetic:N`` or ``synthetic:N:SEED``: the Taobao-shaped generator with N total
  interactions (default 200_000, seed 0).

Every reader implements ``DatasetReader``: ``name``, ``date_bounds()``, ``read_window(start, end)``
(inclusive UTC days) returning a ``ParsedBatch``, ``items()`` and ``users()``.

A ``ParsedBatch`` holds ``interactions`` (exactly ``recsys.schema.INTERACTION_SCHEMA``),
``quarantine`` (exactly ``QUARANTINE_SCHEMA``: source = file path, partition = event_date ISO string
or ``"unroutable"``, line_no (1-based in the file), raw_line, reason) and ``n_read``; always
``n_read == len(interactions) + len(quarantine)``. Lines whose timestamp cannot be parsed have no
day: they carry partition ``"unroutable"`` and are returned by the window containing the dataset's
first day, so summing over a full partition range accounts for every line exactly once.

A missing or unreadable source raises ``SourceError`` naming the path and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol, runtime_checkable

import polars as pl

from recsys.schema import INTERACTION_SCHEMA, QUARANTINE_SCHEMA, empty

__all__ = [
    "DatasetReader",
    "ParsedBatch",
    "SourceError",
    "UNROUTABLE",
    "open_reader",
]

UNROUTABLE = "unroutable"


class SourceError(Exception):
    """A source is missing, unreadable or not in any layout we know; the message names the path."""


@dataclass
class ParsedBatch:
    interactions: pl.DataFrame  # INTERACTION_SCHEMA exactly
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA exactly
    n_read: int  # lines attributed to this window == len(interactions) + len(quarantine)

    def __post_init__(self) -> None:
        if self.n_read != self.interactions.height + self.quarantine.height:
            raise ValueError(f"n_read {self.n_read} != {self.interactions.height} loaded + {self.quarantine.height} quarantined")

    @staticmethod
    def empty() -> ParsedBatch:
        return ParsedBatch(empty(INTERACTION_SCHEMA), empty(QUARANTINE_SCHEMA), 0)

    @staticmethod
    def concat(batches: list[ParsedBatch]) -> ParsedBatch:
        if not batches:
            return ParsedBatch.empty()
        return ParsedBatch(
            pl.concat([b.interactions for b in batches], how="vertical"),
            pl.concat([b.quarantine for b in batches], how="vertical"),
            sum(b.n_read for b in batches),
        )


@runtime_checkable
class DatasetReader(Protocol):
    name: str  # e.g. "movielens-100k", "taobao", "synthetic"

    def date_bounds(self) -> tuple[date, date]:
        """First and last event_date of valid rows, inclusive (UTC days)."""
        ...

    def read_window(self, start: date, end: date) -> ParsedBatch:
        """Rows with event_date in [start, end] inclusive, plus their quarantine."""
        ...

    def items(self) -> pl.DataFrame:
        """item_id Int64, category_id Int64 (nullable), title Utf8 (nullable), attribute columns."""
        ...

    def users(self) -> pl.DataFrame:
        """user_id Int64 plus attribute columns (may be just user_id)."""
        ...


_MOVIELENS_PREFIXES = ("movielens", "ml-")


def open_reader(spec: str, cache_dir: Path, *, window=None) -> DatasetReader:
    """Build the reader for ``spec`` (see module docstring); ``cache_dir`` holds per-day caches."""
    cache_dir = Path(cache_dir)
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "synthetic":
        from recsys.synthetic import SyntheticConfig, SyntheticReader

        parts = [p for p in arg.split(":") if p] if arg else []
        try:
            n = int(parts[0].replace("_", "")) if parts else 200_000
            seed = int(parts[1]) if len(parts) > 1 else 0
        except ValueError as exc:
            raise SourceError(f"bad synthetic spec {spec!r}: expected synthetic[:N[:SEED]]") from exc
        return SyntheticReader(SyntheticConfig(n_interactions=n, seed=seed))
    if not arg:
        raise SourceError(
            f"source spec {spec!r} has no path: expected 'movielens:<dir>', 'taobao:<file>', 'landing:<dir>' or 'synthetic[:N[:SEED]]'"
        )
    path = Path(arg).expanduser()
    if kind == "landing":
        from recsys.sources.landing import LandingReader

        return LandingReader(path, cache_dir, rule=window)
    if kind == "taobao":
        from recsys.sources.taobao import TaobaoReader

        return TaobaoReader(path, cache_dir, window=window)
    if kind.startswith(_MOVIELENS_PREFIXES):
        from recsys.sources.movielens import open_movielens

        return open_movielens(path, cache_dir, window=window)
    raise SourceError(f"unknown source kind {kind!r} in spec {spec!r}: expected movielens, ml-*, taobao, landing or synthetic")
