"""A thread pool map: polars and numpy release the GIL in the heavy parts, so threads scale."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import polars as pl

from recsys.outrank.encoding import EncodedColumn, encode_column

T = TypeVar("T")
R = TypeVar("R")


def thread_map(fn: Callable[[T], R], items: Iterable[T], n_jobs: int) -> list[R]:
    items = list(items)
    if n_jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(n_jobs, len(items))) as pool:
        return list(pool.map(fn, items))


def encode_columns(frame: pl.DataFrame, names: list[str], n_jobs: int) -> dict[str, EncodedColumn]:
    encoded = thread_map(lambda name: encode_column(frame.get_column(name)), names, n_jobs)
    return dict(zip(names, encoded))
