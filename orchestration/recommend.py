"""`python -m orchestration.recommend --user <id> [--k 10]`: one user's recommendations as a person reads them.

Prints the user's recent history (what the recommendations were built from, with titles), then the top-K from
``serving.recommendations`` with the model that produced the list and, for each item, why it is there: the
candidate channels that proposed it and at what rank (``candidates.pool``), and the ranker features on which it
stands out among the user's candidates (``features.ranker_test``). Items the user went on to interact with in the
held-out test window are marked. Reads the warehouse read-only; the SQL is in ``sql/analytics/recommend_*.sql``.

Exit status: 0 shown, 1 unknown user or no warehouse, 2 usage (``--user`` not an integer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

import duckdb
import polars as pl

from resources import settings

HISTORY_ROWS = 10
CHANNELS_SHOWN = 5
FEATURES_SHOWN = 3
MIN_PERCENTILE = 0.8  # a feature "stands out" when the item is in the top 20% of the user's candidates on it

# Words for the ranker features a person is likely to see (recsys/rankers/features.py defines them all).
FEATURE_WORDS = {
    "n_channels": "channels proposing it",
    "i_pop": "item events",
    "i_n_users": "item users",
    "i_pop_7d": "item events, last 7 days",
    "i_pop_30d": "item events, last 30 days",
    "i_trend": "item 7d/30d trend",
    "i_age_days": "days since the item's first event",
    "i_mean_rating": "item mean rating",
    "i_n_ratings": "item ratings",
    "i_conv_rate": "item cart/fav/buy share",
    "ui_n_events": "your events on it",
    "ui_cat_count": "your events in its category",
    "ui_cat_share": "your share in its category",
    "ui_days_since_cat": "days since you saw its category",
    "ui_same_cat_last": "same category as your last item",
    "ui_cooc_last1": "co-occurrence with your last item",
    "ui_cooc_last3": "co-occurrence with your last 3 items",
    "ui_cos_last3": "cosine with your last 3 items",
}


class UsageError(Exception):
    pass


def parse_user(value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"--user must be an integer user id, got {value!r}.\n"
            "usage: make recommend USER=<id> [K=10]   or   python -m orchestration.recommend --user <id> [--k 10]\n"
            "(without USER=<id>, make passes $USER, your login name)"
        ) from None


def _sql(name: str) -> str:
    from resources.warehouse import load_sql

    return load_sql(f"analytics/{name}")


def _query(con: duckdb.DuckDBPyConnection, name: str, params: dict) -> pl.DataFrame:
    return con.execute(_sql(name), params).pl()


def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    schema, table = name.split(".")
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $s AND table_name = $t", {"s": schema, "t": table}
    ).fetchone()
    return bool(found and found[0])


def _fmt_value(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _title(title: str | None, width: int = 44) -> str:
    text = title or "(no title)"
    return text if len(text) <= width else text[: width - 1] + "…"


def _channels_line(channels: pl.DataFrame) -> str:
    if channels.is_empty():
        return "not in the candidate pool (candidates.pool has no row for it)"
    parts = [f"{row['channel']} #{row['rank']}" for row in channels.head(CHANNELS_SHOWN).iter_rows(named=True)]
    more = f", +{channels.height - CHANNELS_SHOWN} more" if channels.height > CHANNELS_SHOWN else ""
    noun = "channel" if channels.height == 1 else "channels"
    return f"proposed by {channels.height} {noun}: " + ", ".join(parts) + more


def _features_line(features: pl.DataFrame) -> str | None:
    """The few features on which the item is highest among the user's candidates (duplicates of one value merged)."""
    strong = features.filter(pl.col("pct") >= MIN_PERCENTILE)
    if strong.is_empty():
        return None
    groups: list[tuple[list[str], float, float, int]] = []
    for row in strong.iter_rows(named=True):
        for names, value, pct, _ in groups:
            if value == row["value"] and pct == row["pct"]:
                names.append(row["feature"])
                break
        else:
            groups.append(([row["feature"]], row["value"], row["pct"], row["n_candidates"]))
    parts = []
    for names, value, pct, _ in groups[:FEATURES_SHOWN]:
        names.sort(key=lambda n: (list(FEATURE_WORDS).index(n) if n in FEATURE_WORDS else len(FEATURE_WORDS), n))
        words = FEATURE_WORDS.get(names[0])
        top = f"top {max(1, round((1 - pct) * 100))}%"
        parts.append(f"{' = '.join(names)} {_fmt_value(value)} ({words + ', ' if words else ''}{top})")
    n = int(features["n_candidates"].max())
    return f"stands out among your {n} candidates on: " + "; ".join(parts)


def show(user_id: int, k: int, data_dir: Path, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    path = data_dir / "warehouse.duckdb"
    if not path.exists():
        print(f"No warehouse at {path}: run `make run` first (it builds the warehouse and the recommendations).", file=sys.stderr)
        return 1
    from resources.warehouse import Warehouse

    with Warehouse(data_dir=str(data_dir)).connect(read_only=True) as con:
        if not _table_exists(con, "serving.recommendations"):
            print(f"{path} has no serving.recommendations yet: run `make run` first.", file=sys.stderr)
            return 1
        items = _query(con, "recommend_items", {"user_id": user_id, "k": k})
        if items.is_empty():
            coverage = _query(con, "recommend_coverage", {}).row(0, named=True)
            examples = ", ".join(str(u) for u in coverage["examples"] or [])
            counts = _query(con, "recommend_user_counts", {"user_id": user_id}) if _table_exists(con, "staging.split") else pl.DataFrame()
            known = f" (they have {int(counts['n'].sum()):,} interactions, but not in the latest window)" if not counts.is_empty() else ""
            print(
                f"User {user_id} has no recommendations{known}: serving.recommendations covers "
                f"{coverage['n_users']:,} users" + (f", e.g. {examples}." if examples else "."),
                file=sys.stderr,
            )
            return 1
        counts = {r["fold"]: r["n"] for r in _query(con, "recommend_user_counts", {"user_id": user_id}).iter_rows(named=True)}
        history = _query(con, "recommend_history", {"user_id": user_id, "n": HISTORY_ROWS, "include_test": False})
        ids = items["item_id"].to_list()
        channels = _query(con, "recommend_channels", {"user_id": user_id, "items": ids})
        features = (
            _query(con, "recommend_features", {"user_id": user_id, "items": ids})
            if _table_exists(con, "features.ranker_test")
            else pl.DataFrame(schema={"item_id": pl.Int64, "feature": pl.Utf8, "value": pl.Float64, "pct": pl.Float64})
        )

    model, version = items["model"][0], items["model_version"][0]
    seen = counts.get("train", 0) + counts.get("valid", 0)
    held_out = counts.get("test", 0)
    print(f"User {user_id}: top {items.height} from {model} (version {version}); warehouse {path}", file=out)
    print("", file=out)
    print(f"Recent history: the last {history.height} of {seen:,} interactions the recommendations were built from, newest first", file=out)
    if history.is_empty():
        print("  (none: a cold user)", file=out)
    else:
        print(f"  {'date':<10}  {'event':<6} {'value':>5}  {'item':>6}  title", file=out)
        for row in history.iter_rows(named=True):
            value = "" if row["value"] is None else f"{row['value']:g}"
            print(
                f"  {row['event_date']!s:<10}  {row['event_type']:<6} {value:>5}  {row['item_id']:>6}  {_title(row['title'], 60)}", file=out
            )
    if held_out:
        print(f"  (+{held_out:,} later interactions in the held-out test window, not used for these recommendations)", file=out)
    print("", file=out)

    print(f"Top {items.height} recommendations ({model}):", file=out)
    hits = 0
    for row in items.iter_rows(named=True):
        mark = "  [hit: the user interacted with it in the held-out window]" if row["in_test_window"] else ""
        hits += bool(row["in_test_window"])
        print(f"  {row['rank']:>2}. {_title(row['title'])} (item {row['item_id']})  score {row['score']:.3f}{mark}", file=out)
        item_channels = channels.filter(pl.col("item_id") == row["item_id"])
        pool = f" (pool rank {row['pool_rank']})" if row["pool_rank"] is not None else ""
        print(f"      {_channels_line(item_channels)}{pool}", file=out)
        line = _features_line(features.filter(pl.col("item_id") == row["item_id"]))
        if line:
            print(f"      {line}", file=out)
    if held_out:
        print("", file=out)
        print(f"Hits: {hits} of these {items.height} are items user {user_id} interacted with in the held-out test window.", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.recommend", description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True, help="user id (an integer)")
    parser.add_argument("--k", type=int, default=10, help="how many recommendations to show (default 10)")
    args = parser.parse_args(argv)
    try:
        user_id = parse_user(args.user)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.k < 1:
        print(f"--k must be at least 1, got {args.k}", file=sys.stderr)
        return 2
    return show(user_id, args.k, settings.data_dir())


if __name__ == "__main__":
    sys.exit(main())
