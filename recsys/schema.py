"""Column contracts shared by every stage (see DESIGN.md section 3).

An *interactions frame* is a polars DataFrame with exactly INTERACTION_SCHEMA's columns; ``ts`` is
naive UTC. A *recommendation frame* has ``user_id, item_id, score, rank`` (rank starts at 1, one
row per recommended item). A *truth frame* has ``user_id, item_id`` (the held-out relevant items).
"""

from __future__ import annotations

import polars as pl

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "fav", "buy", "rate")

INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "item_id": pl.Int64(),
    "event_type": pl.Utf8(),
    "value": pl.Float64(),
    "ts": pl.Datetime("us"),
    "event_date": pl.Date(),
    "session_id": pl.Int64(),
    "source": pl.Utf8(),
    # The canonical event order is (ts, seq): seq is the event's position in its source (the line
    # number in the file or day-file it came from), so events sharing a timestamp keep the order the
    # source wrote them in. Nothing orders events by an id (docs/evaluation.md, "Event order").
    "seq": pl.Int64(),
}

# The columns that define "earlier" and "later" for every sequential component.
EVENT_ORDER: tuple[str, ...] = ("ts", "seq")

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8(),
    "partition": pl.Utf8(),
    "line_no": pl.Int64(),
    "raw_line": pl.Utf8(),
    "reason": pl.Utf8(),
}

RECOMMENDATION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "item_id": pl.Int64(),
    "score": pl.Float64(),
    "rank": pl.Int32(),
}


def with_event_position(frame: pl.DataFrame, name: str = "_pos") -> pl.DataFrame:
    """``frame`` in the canonical event order (ts, seq) with ``name`` = 0-based position in it.

    "Latest" of a group is then the max of ``name``, never a max over ts broken by an id. A frame
    without ``seq`` is taken in its row order (as ``conform`` does)."""
    if "seq" not in frame.columns:
        frame = frame.with_row_index("seq", offset=1)
    return frame.sort(EVENT_ORDER, maintain_order=True).with_row_index(name)


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast ``frame`` to ``schema``; a missing column is an error naming it.

    An in-memory interactions frame without ``seq`` gets its row order as ``seq`` (1-based): the
    frame's own order is then its source order."""
    if "seq" in schema and "seq" not in frame.columns:
        frame = frame.with_row_index("seq", offset=1)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; expected {list(schema)}")
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])
