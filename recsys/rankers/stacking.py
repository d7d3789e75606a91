"""Stacked training windows: the labelled lists of earlier cut-offs as extra LightGBM training rows.

On a temporal split the ranker learns from one window of labels, the valid window (ML-100K: about 80
labelled users). A scheduled pipeline or a backtest has run earlier cut-offs, each with its own
labelled lists, built the same way from the history before that cut-off (scale-free channel
features: ranks, per-user normalised scores, ratios to the user's best). Stacking adds those lists
as more query groups::

    bounds = label_window(split.params)                       # (t_valid_start, t_test_start) or None
    usable = eligible(archived, bounds, n=3)                  # newest first, labels ended before ours began
    extra = stacked_rows(frame, [w.rows for w in usable])     # aligned to frame, one query per (window, user)
    LGBMRanker(params).fit(frame, extra_train=extra)

Rules, each for a reason:

- **No overlap with the labels judged.** A window is eligible only when its label window ended at or
  before the current one began (``end <= t_valid_start``), so no current valid label (and no test
  label) is in its rows; its own labels lie in the current train period, which the features already
  read.
- **Training only.** Extra rows join every LightGBM fit (the early-stopping fit's training side, each
  out-of-fold fit, the refit) and never the held-out side: early stopping, ``holdout_scores``, the
  guard and the promotion gate read the current window's users only.
- **One query per (window, user).** The same user at two cut-offs is two lists; extra rows get
  negative query ids (never a real user id) so the groups stay contiguous and apart.
- **Categorical codes are per window** (``cat__*`` codes number the values each frame holds), so they
  are missing (null) on extra rows rather than wrong; numeric columns are cast to the current dtype; a
  column the window lacks is null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from recsys.rankers.features import CAT_PREFIX, LABEL


@dataclass(frozen=True)
class Window:
    """One archived cut-off's labelled lists: labels from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: datetime
    end: datetime
    rows: pl.DataFrame | pl.LazyFrame


def label_window(split_params: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """(start, end) of the valid fold's label window of a time-cut split (``t_valid_start``,
    ``t_test_start``), or None for a split without one (leave-last-out, files): nothing to stack."""
    start, end = split_params.get("t_valid_start"), split_params.get("t_test_start")
    if not start or not end:
        return None
    return datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end))


def eligible(windows: Sequence[Window], current: tuple[datetime, datetime], n: int) -> list[Window]:
    """The newest ``n`` windows whose labels ended at or before ``current``'s began, newest first."""
    if n <= 0:
        return []
    before = [w for w in windows if w.end <= current[0]]
    return sorted(before, key=lambda w: w.end, reverse=True)[:n]


def within_budget(windows: Sequence[Window], sizes: Sequence[int], room: int) -> list[Window]:
    """The leading ``windows`` (newest first, as ``eligible`` gives them) whose rows (``sizes``) fit in ``room``
    together; ``room`` <= 0 with sizes to fit keeps none. Stops at the first that does not fit, so a kept
    window is never older than a dropped one."""
    kept = []
    for window, rows in zip(windows, sizes, strict=True):
        if rows > room:
            break
        kept.append(window)
        room -= rows
    return kept


def stacked_rows(frame: pl.DataFrame, windows: Sequence[pl.DataFrame | pl.LazyFrame]) -> pl.DataFrame | None:
    """The labelled lists of ``windows`` as rows shaped like ``frame`` (its columns, dtypes and order), each
    (window, user) one query with a negative ``user_id`` (-1, -2, ... in window then user order, rows by
    item within it), categorical codes null. None when no window has a labelled list."""
    parts, next_id = [], 1
    for rows in windows:
        rows = rows.collect() if isinstance(rows, pl.LazyFrame) else rows
        if rows.height == 0 or LABEL not in rows.columns:
            continue
        rows = rows.filter((pl.col(LABEL) > 0).any().over("user_id")).sort("user_id", "item_id")
        if rows.height == 0:
            continue
        query = rows.select(pl.col("user_id").rle_id().cast(pl.Int64).alias("q"))["q"]
        exprs = []
        for name, dtype in frame.schema.items():
            if name == "user_id":
                exprs.append((-(query + next_id)).cast(dtype).alias(name))
            elif name in rows.columns and not name.startswith(CAT_PREFIX):
                exprs.append(rows[name].cast(dtype, strict=False).alias(name))
            else:
                exprs.append(pl.repeat(None, rows.height, dtype=dtype, eager=True).alias(name))
        parts.append(pl.DataFrame(exprs))
        next_id += int(query.max()) + 1
    return pl.concat(parts, how="vertical") if parts else None
