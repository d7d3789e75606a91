"""Per-user cut-offs (leave-last-out): every time-relative ranker feature, and the popularity channel's
per-user option, is measured as of the user's own cut-off — other users' later events never count.

Hand-made expected values, equality with global mode at the log's end, and a randomized comparison
with a brute-force loop over rows (docs/evaluation.md, "Per-user cut-offs")."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from recsys.channels.base import event_weight_expr
from recsys.channels.popularity import PopularityChannel
from recsys.rankers import features
from recsys.rankers.features import cutoff_mode_for, feature_columns
from recsys.schema import INTERACTION_SCHEMA, conform
from resources.ranker_frames import build_ranker_frame

T0 = dt.datetime(1997, 1, 1)
DAY = 86_400_000_000.0
CAT = {10: 1, 11: 1, 12: 2, 13: None}


def _log(rows) -> pl.DataFrame:
    """rows: (user, item, day offset, event_type, value) in source order (seq = row order)."""
    frame = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": [T0 + dt.timedelta(days=r[2]) for r in rows],
            "event_type": [r[3] for r in rows],
            "value": [r[4] for r in rows],
            "session_id": [None] * len(rows),
            "source": ["test"] * len(rows),
        },
        schema_overrides={"value": pl.Float64, "ts": pl.Datetime("us"), "session_id": pl.Int64},
    ).with_columns(pl.col("ts").dt.date().alias("event_date"))
    return conform(frame, INTERACTION_SCHEMA)


def _items(ids=(10, 11, 12, 13)) -> pl.DataFrame:
    return pl.DataFrame(
        {"item_id": list(ids), "category_id": [CAT.get(i) for i in ids]}, schema={"item_id": pl.Int64, "category_id": pl.Int64}
    )


def _pool(pairs) -> pl.DataFrame:
    pool = pl.DataFrame(
        {"user_id": [p[0] for p in pairs], "item_id": [p[1] for p in pairs]}, schema={"user_id": pl.Int64, "item_id": pl.Int64}
    )
    return pool.with_columns(
        pl.lit(1.0).alias("x__score"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("x__rank"),
        pl.lit(1).alias("n_channels"),
    )


# user 1 stops early (cut-off day 1); user 4's only event is at exactly day 1 (counts: ts <= c_u);
# users 2 and 3 go on; user 3's last event (day 21) is the log's end.
HAND = [
    (1, 10, 0.0, "rate", 4.0),
    (2, 10, 0.5, "rate", 2.0),
    (1, 11, 1.0, "click", 1.0),
    (4, 12, 1.0, "click", 1.0),
    (3, 10, 3.0, "click", 1.0),
    (2, 10, 5.0, "cart", 1.0),
    (2, 12, 6.0, "click", 1.0),
    (2, 11, 20.0, "click", 1.0),
    (3, 10, 21.0, "click", 1.0),
]


def _row(frame: pl.DataFrame, user: int, item: int) -> dict:
    return frame.filter((pl.col("user_id") == user) & (pl.col("item_id") == item)).row(0, named=True)


@pytest.fixture(scope="module")
def hand():
    history = _log(HAND)
    pool = _pool([(1, 10), (1, 12), (3, 11), (3, 12), (2, 13)])
    per_user = build_ranker_frame(pool, history, _items(), None, cutoff="per_user")
    global_ = build_ranker_frame(pool, history, _items(), None, cutoff="global")
    return per_user, global_


def test_cutoff_mode_for_protocols():
    assert cutoff_mode_for("leave_last_out") == "per_user"
    for protocol in ("temporal", "temporal_quantile", "files"):
        assert cutoff_mode_for(protocol) == "global"


def test_early_user_item_features_ignore_later_events_of_others(hand):
    per_user, global_ = hand
    r = _row(per_user, 1, 10)  # c_1 = day 1: item 10 has user 1's rating (day 0) and user 2's (day 0.5)
    assert (r["i_pop"], r["i_n_users"], r["i_pop_7d"], r["i_pop_30d"], r["i_n_ratings"]) == (2, 2, 2, 2, 2)
    assert r["i_trend"] == 1.0 and r["i_age_days"] == 1.0 and r["i_mean_rating"] == 3.0 and r["i_conv_rate"] == 0.0
    g = _row(global_, 1, 10)  # global (day 21): the cart (day 5) and user 3's clicks count
    assert (g["i_pop"], g["i_n_users"], g["i_pop_7d"], g["i_pop_30d"], g["i_n_ratings"]) == (5, 3, 1, 5, 2)
    assert g["i_trend"] == pytest.approx(0.2) and g["i_age_days"] == 21.0 and g["i_conv_rate"] == pytest.approx(0.2)

    r = _row(per_user, 1, 12)  # only user 4's click at exactly day 1 counts; user 2's (day 6) does not
    assert (r["i_pop"], r["i_n_users"], r["i_pop_7d"], r["i_pop_30d"]) == (1, 1, 1, 1)
    assert r["i_age_days"] == 0.0 and r["i_trend"] == 1.0 and r["i_mean_rating"] is None
    g = _row(global_, 1, 12)
    assert (g["i_pop"], g["i_n_users"], g["i_pop_7d"], g["i_pop_30d"]) == (2, 2, 0, 2)
    assert g["i_age_days"] == 20.0 and g["i_trend"] == 0.0


def test_early_user_user_and_cross_features_are_relative_to_their_cutoff(hand):
    per_user, global_ = hand
    r, g = _row(per_user, 1, 10), _row(global_, 1, 10)
    assert (r["u_n_events"], r["u_n_events_7d"], r["u_recency_days"], r["u_tenure_days"]) == (2, 2, 0.0, 1.0)
    assert (g["u_n_events"], g["u_n_events_7d"], g["u_recency_days"], g["u_tenure_days"]) == (2, 0, 20.0, 21.0)
    assert r["ui_days_since_cat"] == 0.0 and g["ui_days_since_cat"] == 20.0
    # anchors of user 1: 11 (last), 10. As of day 1 only user 1 has both 11 and 10, and users 1, 2 have 10;
    # globally user 2 also has 11 (day 20), and user 3 has 10.
    assert (r["ui_cooc_last1"], r["ui_cooc_last3"]) == (1.0, 3.0)
    assert (g["ui_cooc_last1"], g["ui_cooc_last3"]) == (2.0, 5.0)
    r12, g12 = _row(per_user, 1, 12), _row(global_, 1, 12)
    assert (r12["ui_cooc_last1"], r12["ui_cooc_last3"], r12["ui_cos_last3"]) == (0.0, 0.0, 0.0)
    assert (g12["ui_cooc_last1"], g12["ui_cooc_last3"]) == (1.0, 2.0)  # user 2's day-6 and day-20 events


def test_user_whose_cutoff_is_the_log_end_equals_global(hand):
    per_user, global_ = hand
    a = per_user.filter(pl.col("user_id") == 3)
    b = global_.filter(pl.col("user_id") == 3)
    assert a.columns == b.columns and a.schema == b.schema
    # exact, except that global mode takes item degrees in float32 for the cosine
    assert a.drop("ui_cos_last3").equals(b.drop("ui_cos_last3"))
    np.testing.assert_allclose(a["ui_cos_last3"].to_numpy(), b["ui_cos_last3"].to_numpy(), rtol=1e-6)
    assert per_user.columns == global_.columns and per_user.schema == global_.schema


def test_explicit_cutoff_frame_equals_derived_and_validates():
    history = _log(HAND)
    pool = _pool([(1, 10), (1, 12), (3, 11), (2, 13)])
    derived = build_ranker_frame(pool, history, _items(), None, cutoff="per_user")
    cuts = history.group_by("user_id").agg(pl.col("ts").max().alias("cutoff"))
    assert build_ranker_frame(pool, history, _items(), None, cutoff=cuts).equals(derived)
    with pytest.raises(ValueError, match="cutoff must be one of"):
        build_ranker_frame(pool, history, _items(), None, cutoff="per-user")
    with pytest.raises(ValueError, match="more than one row"):
        build_ranker_frame(pool, history, _items(), None, cutoff=pl.concat([cuts, cuts]))


# ---------------------------------------------------------------- brute force


def _brute(history: pl.DataFrame, pool: pl.DataFrame, items: pl.DataFrame, cut: dict, ref, cap: int) -> dict:
    """Every feature of every pool row by a direct loop: the definitions, as of the user's cut-off."""
    ev = history.with_row_index("_o").sort("ts", "seq", maintain_order=True).to_dicts()
    cat = dict(zip(items["item_id"].to_list(), items["category_id"].to_list(), strict=True))
    week, month = dt.timedelta(days=7), dt.timedelta(days=30)

    def days(a, b):
        return (a - b) / dt.timedelta(microseconds=1) / DAY

    def last_distinct(events, n):
        out = []
        for e in reversed(events):
            if e["item_id"] not in out:
                out.append(e["item_id"])
        return out[:n]

    capped = {}
    first = {}
    for v in {e["user_id"] for e in ev}:
        own_all = [e for e in ev if e["user_id"] == v]
        capped[v] = set(last_distinct(own_all, cap))
        for e in own_all:
            first.setdefault((v, e["item_id"]), e["ts"])

    def has(v, i, c):
        return i in capped[v] and first[(v, i)] <= c

    out = {}
    for row in pool.select("user_id", "item_id").to_dicts():
        u, i = row["user_id"], row["item_id"]
        c = cut.get(u, ref)
        own = [e for e in ev if e["user_id"] == u and e["ts"] <= c]
        it = [e for e in ev if e["item_id"] == i and e["ts"] <= c]
        rates = [e["value"] for e in it if e["event_type"] == "rate" and e["value"] is not None]
        urates = [e["value"] for e in own if e["event_type"] == "rate" and e["value"] is not None]
        p7 = sum(e["ts"] >= c - week for e in it)
        p30 = sum(e["ts"] >= c - month for e in it)
        in_cat = [e for e in own if cat.get(e["item_id"]) is not None and cat.get(e["item_id"]) == cat.get(i)]
        f = {
            "u_n_events": len(own) or None,
            "u_n_items": len({e["item_id"] for e in own}) or None,
            "u_days_active": len({e["event_date"] for e in own}) or None,
            "u_n_events_7d": sum(e["ts"] >= c - week for e in own) if own else None,
            "u_recency_days": days(c, max(e["ts"] for e in own)) if own else None,
            "u_tenure_days": days(c, min(e["ts"] for e in own)) if own else None,
            "u_mean_rating": sum(urates) / len(urates) if urates else None,
            "i_pop": len(it),
            "i_n_users": len({e["user_id"] for e in it}),
            "i_pop_7d": p7,
            "i_pop_30d": p30,
            "i_mean_rating": sum(rates) / len(rates) if rates else None,
            "i_n_ratings": sum(e["event_type"] == "rate" for e in it),
            "i_conv_rate": sum(e["event_type"] in ("cart", "fav", "buy") for e in it) / len(it) if it else None,
            "i_trend": p7 / p30 if p30 else None,
            "i_age_days": days(c, min(e["ts"] for e in it)) if it else None,
            "ui_n_events": sum(e["item_id"] == i for e in own),
            "ui_cat_count": len(in_cat),
            "ui_cat_share": len(in_cat) / len(own) if own else None,
            "ui_days_since_cat": days(c, max(e["ts"] for e in in_cat)) if in_cat else None,
            "ui_same_cat_last": None,
            "ui_cooc_last1": None,
            "ui_cooc_last3": None,
            "ui_cos_last3": None,
        }
        if own:
            last_cat = cat.get(last_distinct(own, 1)[0])
            f["ui_same_cat_last"] = None if last_cat is None or cat.get(i) is None else int(last_cat == cat.get(i))
            users = list(capped)
            counts, cos = [], []
            for a in last_distinct(own, 3):
                n = sum(has(v, a, c) and has(v, i, c) for v in users)
                deg = sum(has(v, a, c) for v in users) * sum(has(v, i, c) for v in users)
                counts.append(n)
                cos.append(n / math.sqrt(max(deg, 1)))
            f["ui_cooc_last1"], f["ui_cooc_last3"], f["ui_cos_last3"] = float(counts[0]), float(sum(counts)), max(cos)
        out[(u, i)] = f
    return out


def _random_world(seed: int):
    rng = np.random.default_rng(seed)
    n = 70
    types = rng.choice(["click", "rate", "cart", "buy", "view", "fav"], n, p=[0.4, 0.25, 0.1, 0.1, 0.1, 0.05])
    rows = [
        (
            int(rng.integers(1, 9)),
            int(rng.integers(10, 14)) if rng.random() < 0.3 else int(rng.integers(10, 20)),
            float(rng.integers(0, 45)) + float(rng.integers(0, 3)) / 3.0,  # coarse times: many ties
            str(t),
            float(rng.integers(1, 6)) if t == "rate" and rng.random() < 0.9 else (None if t == "rate" else 1.0),
        )
        for t in types
    ]
    history = _log(rows)
    item_ids = list(range(10, 22))  # 20, 21: never in history
    items = pl.DataFrame(
        {"item_id": item_ids, "category_id": [None if i % 5 == 4 else i % 3 for i in item_ids]},
        schema={"item_id": pl.Int64, "category_id": pl.Int64},
    )
    users = [*sorted(set(history["user_id"].to_list())), 99]  # 99: no history
    pairs = [(u, i) for u in users for i in item_ids if rng.random() < 0.6 or i == 20]
    return history, items, _pool(pairs), rng


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["per_user", "global", "frame"])
@pytest.mark.parametrize("cap", [200, 3])
def test_matches_brute_force(seed, mode, cap, monkeypatch):
    monkeypatch.setattr(features, "COOC_MAX_ITEMS_PER_USER", cap)
    history, items, pool, rng = _random_world(seed)
    ref = history["ts"].max()
    last = dict(history.group_by("user_id").agg(pl.col("ts").max()).iter_rows())
    if mode == "per_user":
        cut, arg = last, "per_user"
    elif mode == "global":
        cut, arg = {}, "global"
    else:  # explicit cut-offs, some before the user's last event, some users left out (-> history's end)
        cut = {u: T0 + dt.timedelta(days=float(rng.integers(0, 46))) for u in last if rng.random() < 0.8}
        arg = pl.DataFrame({"user_id": list(cut), "cutoff": list(cut.values())}, schema={"user_id": pl.Int64, "cutoff": pl.Datetime("us")})
    frame = build_ranker_frame(pool, history, items, None, cutoff=arg)
    expected = _brute(history, pool, items, cut, ref, cap)
    assert frame.height == len(expected)
    names = [c for c in feature_columns(frame) if not c.startswith("x__") and c != "n_channels"]
    assert set(names) == set(next(iter(expected.values())))
    for row in frame.to_dicts():
        want = expected[(row["user_id"], row["item_id"])]
        for name in names:
            got, exp = row[name], want[name]
            assert (got is None) == (exp is None), (mode, row["user_id"], row["item_id"], name, got, exp)
            if exp is not None:
                tol = 1e-6 if name == "ui_cos_last3" and mode == "global" else 1e-9  # global: float32 degrees
                assert got == pytest.approx(exp, rel=tol, abs=tol), (mode, row["user_id"], row["item_id"], name, got, exp)


def test_leave_last_out_folds_use_each_users_last_history_event():
    """The valid fold's cut-off is the last train event, the test fold's the last train + valid event."""
    from recsys.split import leave_last_out_split

    history, items, _, _ = _random_world(3)
    split = leave_last_out_split(history)
    for fold in ("valid", "test"):
        hist, target = split.fold(fold)
        pool = _pool([(u, i) for u in target["user_id"].unique().to_list() for i in (10, 11, 12)])
        frame = build_ranker_frame(pool, hist, items, None, cutoff=cutoff_mode_for(split.params["protocol"]))
        expected = _brute(hist, pool, items, dict(hist.group_by("user_id").agg(pl.col("ts").max()).iter_rows()), hist["ts"].max(), 200)
        for row in frame.to_dicts():
            assert row["i_pop"] == expected[(row["user_id"], row["item_id"])]["i_pop"]
            assert row["u_recency_days"] == 0.0


# ---------------------------------------------------------------- popularity channel


def _brute_pop(history: pl.DataFrame, item_ids, c, half_life: float) -> tuple[np.ndarray, np.ndarray]:
    w = history.select("item_id", "ts", event_weight_expr(None).alias("w")).filter(pl.col("ts") <= c)
    glob, rec = [], []
    for i in item_ids:
        e = w.filter(pl.col("item_id") == i)
        age = np.array([(c - t) / dt.timedelta(days=1) for t in e["ts"].to_list()])
        glob.append(float(e["w"].sum()))
        rec.append(float((e["w"].to_numpy() * 0.5 ** (age / half_life)).sum()))
    return np.array(glob), np.array(rec)


@pytest.mark.parametrize("half_life", [3.0, 0.05])  # 0.05 days: a block spans more than _SPAN half-lives
@pytest.mark.parametrize("mode", ["global", "recent", "blend", "category"])
def test_popularity_per_user_scores_as_of_the_users_cutoff(mode, half_life):
    history, items, _, _ = _random_world(4)
    channel = PopularityChannel(mode=mode, half_life_days=half_life, cutoff="per_user", batch_size=3).fit(history, items=items)
    plain = PopularityChannel(mode=mode, half_life_days=half_life).fit(history, items=items)
    ids = channel.items_.ids
    last = dict(history.group_by("user_id").agg(pl.col("ts").max()).iter_rows())
    ref = history["ts"].max()
    users = sorted(last)
    assert len(set(last.values())) > 3
    late_first = channel._score_block(channel.users_.positions(users[::-1]))[::-1]  # running totals reset
    scores = channel._score_block(channel.users_.positions(users))
    np.testing.assert_allclose(scores, late_first, rtol=1e-6, atol=1e-7)
    for row, u in enumerate(users):
        g, r = _brute_pop(history, ids, last[u], half_life)
        g, r = g / g.max(), r / r.max()
        if mode == "global":
            want = g
        elif mode == "recent":
            want = r
        else:
            w = channel._weights()
            want = w.get("global", 0.0) * g + w.get("recent", 0.0) * r
            if w.get("category"):
                cats = channel.cat_
                cat_max = np.zeros(channel.n_cats_)
                np.maximum.at(cat_max, cats[cats >= 0], r[cats >= 0])
                cat_pop = np.where(cats >= 0, r / np.maximum(cat_max[np.maximum(cats, 0)], 1e-12), 0.0)
                aff = channel.user_cat_[channel.users_.positions([u])].toarray()
                aff = aff / aff.sum()
                if channel.n_top_categories < channel.n_cats_:
                    drop = np.argpartition(-aff, channel.n_top_categories - 1, axis=1)[:, channel.n_top_categories :]
                    np.put_along_axis(aff, drop, 0.0, axis=1)
                want = want + w["category"] * np.append(aff[0], 0.0)[cats] * cat_pop
        np.testing.assert_allclose(scores[row], want, rtol=1e-5, atol=1e-6)
        if last[u] == ref:  # a user whose cut-off is the log's end: exactly the global-reference scores
            np.testing.assert_allclose(scores[row], plain._score_block(plain.users_.positions([u]))[0], rtol=1e-6, atol=1e-7)
    # recommend keeps the request order and excludes seen items exactly as the global channel does
    recs = channel.recommend(users[::-1], k=5)
    assert recs["user_id"].unique(maintain_order=True).to_list() == users[::-1]
    seen = set(history.select("user_id", "item_id").iter_rows())
    assert not any((u, i) in seen for u, i in recs.select("user_id", "item_id").iter_rows())


def test_popularity_per_user_ignores_later_events_of_others():
    history = _log(HAND)
    channel = PopularityChannel(mode="recent", half_life_days=7.0, cutoff="per_user").fit(history, items=_items())
    recs = channel.recommend([1], k=3, exclude_seen=False)
    # as of day 1: item 10 (rate 4 day 0 + rate 2 day 0.5) vs 11 and 12 (one click each at day 1)
    assert recs["item_id"].to_list()[0] == 10
    late = channel.recommend([3], k=4, exclude_seen=False)
    assert late["item_id"].to_list()[0] == 10
    assert channel.fallback_scores().shape == (len(channel.items_),)
    with pytest.raises(ValueError, match="cutoff"):
        PopularityChannel(cutoff="sometimes")
