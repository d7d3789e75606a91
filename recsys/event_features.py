"""Turning the event_features rows into categorical features OutRank can rank.

SQL (sql/features/event_features.sql) gives raw attributes; here, numeric attributes with many
values are quantile-bucketed (age, release year, ...), zip-like codes keep their first character,
and multi-valued genre strings keep their first genre, so every feature is a small categorical.
"""

from __future__ import annotations

import polars as pl

RAW_ID_SUFFIX = "_raw"  # ids are kept raw on purpose: OutRank must show they are noise once corrected


def bucketize(frame: pl.DataFrame, label: str = "label", max_numeric_values: int = 32, n_buckets: int = 10) -> pl.DataFrame:
    """Return ``frame`` with every non-label column as a categorical of modest cardinality."""
    out = []
    for name in frame.columns:
        col = frame[name]
        if name == label or name.endswith(RAW_ID_SUFFIX):
            out.append(col)
        elif "zip" in name:
            out.append(col.cast(pl.Utf8).str.slice(0, 1).alias(f"{name}_prefix"))
        elif col.dtype == pl.Utf8 and col.str.contains(r"[|]").any():
            out.append(col.str.split("|").list.first().alias(f"{name}_first"))
        elif col.dtype.is_numeric() and col.n_unique() > max_numeric_values:
            ranks = col.cast(pl.Float64).rank("dense")
            out.append(((ranks - 1) * n_buckets // ranks.max()).cast(pl.Int32).alias(f"{name}_bucket"))
        else:
            out.append(col)
    return pl.DataFrame(out)


def select_features(ranking: pl.DataFrame, redundant: pl.DataFrame) -> list[str]:
    """Features above noise, not leaking, not constant, not raw ids; greedily de-duplicated.

    Walks the ranking best first and skips a feature that is redundant (a row of ``redundant``:
    feature_a, feature_b) with one already chosen, so of a near-duplicate pair the better one stays.
    """
    eligible = (
        ranking.filter(
            pl.col("above_noise")
            & ~pl.col("leakage").fill_null(False)
            & ~pl.col("is_constant").fill_null(False)
            & ~pl.col("feature").str.ends_with(RAW_ID_SUFFIX)
        )
        .sort("rank")["feature"]
        .to_list()
    )
    partners: dict[str, set[str]] = {}
    for a, b in redundant.select("feature_a", "feature_b").iter_rows():
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    chosen: list[str] = []
    for feature in eligible:
        if not partners.get(feature, set()) & set(chosen):
            chosen.append(feature)
    return chosen


def with_selected_attributes(
    catalog: pl.DataFrame, key: str, selected: list[str], skip: tuple[str, ...] = ("title",)
) -> tuple[pl.DataFrame, list[str]]:
    """``catalog`` (users or items) plus the OutRank-selected features it can provide, derived the
    way event_features derived them (bucketize), and the names of those features.

    The rankers and PI2I must see the feature OutRank judged (e.g. ``zip_prefix``, ``genres_first``,
    ``year_bucket``), not the raw column it came from: a raw zip code has ~800 values and a genre
    combination ~200, which a tree model memorizes instead of generalizing.
    """
    attributes = catalog.drop([key, *[c for c in skip if c in catalog.columns]])
    derived = bucketize(attributes, label="__no_label__")
    names = [name for name in selected if name in derived.columns]
    extra = [name for name in names if name not in catalog.columns]
    return catalog.with_columns(derived.select(extra)) if extra else catalog, names
