"""Deterministic Taobao-shaped synthetic interactions with planted ground truth.

API
---
- ``SyntheticConfig(n_interactions=200_000, seed=0, n_days=30, start=date(2017, 11, 25), ...)``;
  users/items/categories scale with n_interactions unless given.
- ``SyntheticWorld.build(config)``: everything that is not per day, O(users + items) memory:
  ``item_category`` (per item index), ``next_items`` (n_items x n_next planted "next" item ids;
  row ``item_id - 1``), ``next_weights`` (transition probability of each slot), ``taste_categories``
  / ``taste_weights`` (n_users x n_taste), ``affinity(user_ids, item_ids) -> float64 in (0, 1)``,
  ``event_probabilities(user_ids, item_ids, carted)``, ``items()``, ``users()``.
  Ids are dense: user_id = user index + 1, item_id = item index + 1, category_id = category index.
- ``generate_day(world, day) -> pl.DataFrame`` (INTERACTION_SCHEMA, source "synthetic", rows sorted
  by ts, session_id = day.toordinal() * 10**8 + session index). Depends only on (seed, day):
  any day can be regenerated alone, identically, without the others.
- ``SyntheticReader(config, corrupt_days=None)``: ``DatasetReader`` (name "synthetic"). Each day is
  rendered as Taobao CSV lines (user,item,category,pv|cart|fav|buy,unix_ts,session_id) and parsed by
  the Taobao line parser; ``corrupt_days={day: fraction}`` replaces that fraction of the day's
  lines with malformed ones (column count, unknown behaviour, negative id, timestamp outside the
  day, in rotation), which come back as quarantine rows of that day's partition.

Model: category popularity is Zipf; items are Zipf-popular within their category. Users have
lognormal activity, a Dirichlet taste over ``n_taste`` popular-biased categories, a latent vector
and a hidden price preference. A session starts at a taste-sampled item and walks the planted graph
(slot k taken with probability ``next_weights[k]``), restarting to a taste-sampled item with
``restart_prob``. Every step is a view; cart, fav and buy follow with probabilities that rise with
affinity = sigmoid(-2 + 3·taste weight of the item's category + 1.2·<user, item> latent dot
- 0.5·|price preference - price bucket|). age_bucket and gender correlate with taste, city_tier is
noise. Sessions are stored in ``session_id`` and never cross midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from recsys.schema import INTERACTION_SCHEMA
from recsys.sources import ParsedBatch
from recsys.sources.lines import Field, finalize, lines_frame, route
from recsys.sources.taobao import taobao_format

DAY_SECONDS = 86_400
SESSION_ID_STRIDE = 10**8
EVENT_CODES = ("view", "cart", "fav", "buy")
_SYLLABLES = np.array(
    ["ka", "lo", "mi", "su", "ten", "ra", "po", "ve", "xi", "du", "na", "zor", "bel", "qua", "fi", "mo"]
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticConfig:
    n_interactions: int = 200_000
    seed: int = 0
    n_days: int = 30
    start: date = date(2017, 11, 25)
    n_users: int | None = None  # default n_interactions // 60
    n_items: int | None = None  # default n_interactions // 25
    n_categories: int | None = None  # default ~ sqrt(n_items) / 3
    n_next: int = 5
    same_category_next: float = 0.75
    restart_prob: float = 0.25
    mean_session_views: float = 6.0
    max_session_views: int = 60
    n_taste: int = 3
    explore: float = 0.1  # share of restarts that ignore taste (global popularity)
    latent_dim: int = 8
    category_zipf: float = 1.1
    item_zipf: float = 1.0
    activity_sigma: float = 1.0
    mean_step_seconds: float = 40.0
    # funnel: p(cart) = cart_rate * a^2, p(fav) = fav_rate * a^2,
    # p(buy) = buy_rate * a^2 + buy_after_cart * a * carted
    cart_rate: float = 0.5
    fav_rate: float = 0.26
    buy_rate: float = 0.09
    buy_after_cart: float = 0.35

    @property
    def users(self) -> int:
        return self.n_users or max(100, self.n_interactions // 60)

    @property
    def items(self) -> int:
        return self.n_items or max(300, self.n_interactions // 25)

    @property
    def categories(self) -> int:
        return self.n_categories or max(8, int(round(np.sqrt(self.items) / 3)))

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.n_days - 1)


def _zipf_weights(n: int, a: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf weights over a random permutation of n things (rank 1 goes to a random one)."""
    ranks = rng.permutation(n) + 1
    w = 1.0 / ranks.astype(np.float64) ** a
    return w / w.sum()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class SyntheticWorld:
    config: SyntheticConfig
    category_weight: np.ndarray  # (C,) sums to 1
    related_categories: np.ndarray  # (C, 2)
    item_category: np.ndarray  # (I,) int32, items contiguous by category
    item_cum_in_category: np.ndarray  # (I,) float64; category c spans (c, c+1]
    item_price: np.ndarray  # (I,) int8 price bucket 0..4
    item_vec: np.ndarray  # (I, d) float32
    next_items: np.ndarray  # (I, n_next) int64 item ids
    next_weights: np.ndarray  # (n_next,)
    user_activity_cdf: np.ndarray  # (U,)
    taste_categories: np.ndarray  # (U, T) int32
    taste_weights: np.ndarray  # (U, T) float64
    user_vec: np.ndarray  # (U, d) float32
    user_price: np.ndarray  # (U,) int8
    user_age_bucket: np.ndarray
    user_gender: np.ndarray
    user_city_tier: np.ndarray
    rows_per_session: float = 1.0
    _category_cdf: np.ndarray = field(default=None, repr=False)

    @classmethod
    def build(cls, config: SyntheticConfig) -> SyntheticWorld:
        rng = np.random.default_rng([config.seed, 1])
        C, I, U = config.categories, config.items, config.users
        K, T, d = config.n_next, config.n_taste, config.latent_dim
        category_weight = _zipf_weights(C, config.category_zipf, rng)
        # popular categories hold more items; every category at least one
        sizes = 1 + rng.multinomial(I - C, np.sqrt(category_weight) / np.sqrt(category_weight).sum())
        item_category = np.repeat(np.arange(C, dtype=np.int32), sizes)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        rank_in_cat = np.arange(I) - starts[item_category]
        # Zipf within category over a random order of the category's items
        shuffled_rank = rank_in_cat[rng.permutation(I)]
        order = np.lexsort((shuffled_rank, item_category))
        rank_in_cat = np.empty(I, dtype=np.int64)
        rank_in_cat[order] = np.arange(I) - starts[item_category[order]]
        w_in = 1.0 / (rank_in_cat + 1.0) ** config.item_zipf
        w_in /= np.bincount(item_category, weights=w_in, minlength=C)[item_category]
        item_cum = np.cumsum(w_in)
        # fix float drift so category c ends exactly at c + 1
        ends = starts + sizes - 1
        item_cum[ends] = np.arange(1, C + 1, dtype=np.float64)

        related = np.stack([(np.arange(C) + rng.integers(1, C, size=C)) % C for _ in range(2)], axis=1)
        category_price = rng.integers(0, 5, size=C)
        item_price = np.clip(category_price[item_category] + rng.integers(-1, 2, size=I), 0, 4).astype(np.int8)
        item_vec = (rng.standard_normal((I, d)) / d**0.25).astype(np.float32)

        world = cls(
            config=config,
            category_weight=category_weight,
            related_categories=related,
            item_category=item_category,
            item_cum_in_category=item_cum,
            item_price=item_price,
            item_vec=item_vec,
            next_items=np.zeros((I, K), dtype=np.int64),
            next_weights=np.array([0.6**k for k in range(K)]) / sum(0.6**k for k in range(K)),
            user_activity_cdf=np.zeros(U),
            taste_categories=np.zeros((U, T), dtype=np.int32),
            taste_weights=np.zeros((U, T)),
            user_vec=np.zeros((U, d), dtype=np.float32),
            user_price=np.zeros(U, dtype=np.int8),
            user_age_bucket=np.zeros(U, dtype=np.int8),
            user_gender=np.zeros(U, dtype="<U1"),
            user_city_tier=np.zeros(U, dtype=np.int8),
        )
        world._category_cdf = np.cumsum(category_weight)

        # planted graph: each slot stays in the item's category or jumps to a related one
        same = rng.random((I, K)) < config.same_category_next
        jump = related[item_category[:, None], rng.integers(0, 2, size=(I, K))]
        target_cat = np.where(same, item_category[:, None], jump)
        nxt = world._sample_in_category(target_cat.ravel(), rng).reshape(I, K)
        self_loop = nxt == np.arange(I)[:, None]
        # a self loop moves to the category's next item (wrapping inside the category)
        wrapped = np.where(nxt + 1 > ends[item_category[nxt]], starts[item_category[nxt]], nxt + 1)
        nxt = np.where(self_loop, wrapped, nxt)
        world.next_items = (nxt + 1).astype(np.int64)

        activity = rng.lognormal(0.0, config.activity_sigma, size=U)
        world.user_activity_cdf = np.cumsum(activity) / activity.sum()
        world.taste_categories = world._sample_categories(U * T, rng).reshape(U, T).astype(np.int32)
        tw = rng.dirichlet(np.ones(T), size=U)
        world.taste_weights = -np.sort(-tw, axis=1)  # strongest taste first
        world.user_vec = (rng.standard_normal((U, d)) / d**0.25).astype(np.float32)
        world.user_price = rng.integers(0, 5, size=U).astype(np.int8)
        # observable attributes: age and gender follow the main taste 70% of the time; city is noise
        main = world.taste_categories[:, 0]
        world.user_age_bucket = np.where(rng.random(U) < 0.7, main % 6, rng.integers(0, 6, size=U)).astype(np.int8)
        world.user_gender = np.where(np.where(rng.random(U) < 0.7, main % 2, rng.integers(0, 2, size=U)) == 0, "F", "M")
        world.user_city_tier = rng.integers(1, 5, size=U).astype(np.int8)

        # calibrate rows per session so a config's n_interactions is met on average
        cal_rng = np.random.default_rng([config.seed, 4])
        cal_users = np.searchsorted(world.user_activity_cdf, cal_rng.random(4000), side="right")
        cal_users = np.minimum(cal_users, U - 1)
        cal = world._simulate(cal_users, cal_rng)
        world.rows_per_session = max(1.0, cal["item"].size / 4000)
        return world

    # --- sampling helpers (all vectorized) ---
    def _sample_categories(self, n: int, rng: np.random.Generator) -> np.ndarray:
        c = np.searchsorted(self._category_cdf, rng.random(n) * self._category_cdf[-1], side="right")
        return np.minimum(c, self.config.categories - 1)

    def _sample_in_category(self, cats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = cats + rng.random(cats.size)
        idx = np.searchsorted(self.item_cum_in_category, u, side="left")
        return np.minimum(idx, self.config.items - 1)

    def _sample_taste_items(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        T = self.config.n_taste
        cum = np.cumsum(self.taste_weights[users], axis=1)
        slot = np.minimum((rng.random(users.size)[:, None] > cum).sum(axis=1), T - 1)
        cats = self.taste_categories[users, slot]
        explore = rng.random(users.size) < self.config.explore
        if explore.any():
            cats = cats.copy()
            cats[explore] = self._sample_categories(int(explore.sum()), rng)
        return self._sample_in_category(cats, rng)

    # --- ground truth ---
    def _affinity_idx(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        cat = self.item_category[i]
        taste = (self.taste_weights[u] * (self.taste_categories[u] == cat[:, None])).sum(axis=1)
        dot = np.einsum("nd,nd->n", self.user_vec[u], self.item_vec[i], dtype=np.float64)
        price_gap = np.abs(self.user_price[u].astype(np.int16) - self.item_price[i].astype(np.int16))
        return _sigmoid(-2.0 + 3.0 * taste + 1.2 * dot - 0.5 * price_gap)

    def affinity(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Planted user-item affinity in (0, 1) for id arrays (broadcast to equal length)."""
        u, i = np.broadcast_arrays(np.asarray(user_ids) - 1, np.asarray(item_ids) - 1)
        return self._affinity_idx(u.ravel(), i.ravel()).reshape(u.shape)

    def event_probabilities(self, user_ids, item_ids, carted=False) -> dict[str, np.ndarray]:
        """Probability of cart/fav/buy after a view of item by user (the label oracle)."""
        a = self.affinity(user_ids, item_ids)
        c = self.config
        p_cart = np.minimum(0.95, c.cart_rate * a**2)

        def buy_given(carted_flag):
            return np.minimum(0.95, c.buy_rate * a**2 + c.buy_after_cart * a * carted_flag)

        p_buy = buy_given(np.asarray(carted, dtype=np.float64)) if carted is not None else None
        return {"cart": p_cart, "fav": np.minimum(0.95, c.fav_rate * a**2), "buy": p_buy,
                "buy_marginal": p_cart * buy_given(1.0) + (1 - p_cart) * buy_given(0.0)}  # fmt: skip

    # --- simulation ---
    def _simulate(self, users: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Sessions for ``users`` (one per entry): rows as arrays, seconds relative to session start."""
        c = self.config
        S = users.size
        lengths = np.minimum(rng.geometric(1.0 / c.mean_session_views, size=S), c.max_session_views)
        order = np.argsort(-lengths, kind="stable")  # longest first: active sessions are a prefix
        users_o, lengths_o = users[order], lengths[order]
        steps_item, steps_sess, steps_t = [], [], []
        cur = self._sample_taste_items(users_o, rng)
        for t in range(int(lengths_o.max(initial=0))):
            n_active = int(np.searchsorted(-lengths_o, -t, side="left"))  # sessions with length > t
            if t > 0:
                cur = cur[:n_active]
                restart = rng.random(n_active) < c.restart_prob
                slot = np.minimum(np.searchsorted(np.cumsum(self.next_weights), rng.random(n_active)), c.n_next - 1)
                walked = self.next_items[cur, slot] - 1
                if restart.any():
                    walked[restart] = self._sample_taste_items(users_o[:n_active][restart], rng)
                cur = walked
            steps_item.append(cur)
            steps_sess.append(order[:n_active])
            steps_t.append(np.full(n_active, t, dtype=np.int32))
        item = np.concatenate(steps_item) if steps_item else np.zeros(0, dtype=np.int64)
        sess = np.concatenate(steps_sess) if steps_sess else np.zeros(0, dtype=np.int64)
        step = np.concatenate(steps_t) if steps_t else np.zeros(0, dtype=np.int32)
        # step times: cumulative exponential gaps, ordered by (session, step)
        o = np.lexsort((step, sess))
        item, sess, step = item[o], sess[o], step[o]
        gaps = np.where(step == 0, 0.0, 1.0 + rng.exponential(c.mean_step_seconds, size=item.size))
        t_rel = np.cumsum(gaps)
        first = np.searchsorted(sess, sess, side="left")
        t_rel = np.floor(t_rel - t_rel[first]).astype(np.int64)
        u = users[sess]
        # funnel after each view
        a = self._affinity_idx(u, item)
        cart = rng.random(item.size) < np.minimum(0.95, c.cart_rate * a**2)
        fav = rng.random(item.size) < np.minimum(0.95, c.fav_rate * a**2)
        buy = rng.random(item.size) < np.minimum(0.95, c.buy_rate * a**2 + c.buy_after_cart * a * cart)
        extra_off = [(cart, 1, 5, 60), (fav, 2, 3, 30), (buy, 3, 20, 300)]
        rows_sess, rows_item, rows_t, rows_ev = [sess], [item], [t_rel], [np.zeros(item.size, dtype=np.int8)]
        for mask, code, lo, hi in extra_off:
            rows_sess.append(sess[mask])
            rows_item.append(item[mask])
            rows_t.append(t_rel[mask] + rng.integers(lo, hi, size=int(mask.sum())))
            rows_ev.append(np.full(int(mask.sum()), code, dtype=np.int8))
        return {
            "session": np.concatenate(rows_sess),
            "item": np.concatenate(rows_item),
            "t": np.concatenate(rows_t),
            "event": np.concatenate(rows_ev),
        }

    # --- catalogue frames ---
    def items(self) -> pl.DataFrame:
        rng = np.random.default_rng([self.config.seed, 5])
        I, C = self.config.items, self.config.categories
        cat_words = np.char.add(_SYLLABLES[np.arange(C) % 16], _SYLLABLES[(np.arange(C) // 16) % 16])
        cat_words = np.char.add(cat_words, np.char.mod("%d", np.arange(C) // 256))
        brand = np.char.add(_SYLLABLES[rng.integers(0, 16, size=I)], _SYLLABLES[rng.integers(0, 16, size=I)])
        title = np.char.add(np.char.add(brand, " "), cat_words[self.item_category])
        title = np.char.add(np.char.add(title, " "), np.char.mod("%d", rng.integers(100, 999, size=I)))
        return pl.DataFrame(
            {
                "item_id": np.arange(1, I + 1, dtype=np.int64),
                "category_id": self.item_category.astype(np.int64),
                "title": title.astype(str),
                "price_bucket": self.item_price.astype(np.int64),
            }
        )

    def users(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "user_id": np.arange(1, self.config.users + 1, dtype=np.int64),
                "age_bucket": self.user_age_bucket.astype(np.int64),
                "gender": self.user_gender.astype(str),
                "city_tier": self.user_city_tier.astype(np.int64),
            }
        )


def _hour_weights() -> np.ndarray:
    # evening peak, night trough: sessions are not uniform over the day
    h = np.arange(24)
    w = 1.0 + 0.8 * np.sin((h - 8) / 24 * 2 * np.pi) + 0.3
    return w / w.sum()


def generate_day(world: SyntheticWorld, day: date) -> pl.DataFrame:
    """All interactions of ``day`` (see module docstring); a pure function of (world seed, day)."""
    c = world.config
    rng = np.random.default_rng([c.seed, 2, day.toordinal()])
    # weekends 15% busier, normalised so a week averages n_interactions / n_days per day
    weekday = (1.15 if day.weekday() >= 5 else 1.0) / ((5 + 2 * 1.15) / 7)
    expected = c.n_interactions / c.n_days * weekday / world.rows_per_session
    n_sessions = int(rng.poisson(expected))
    users = np.minimum(np.searchsorted(world.user_activity_cdf, rng.random(n_sessions), side="right"), c.users - 1)
    rows = world._simulate(users, rng)
    span = np.zeros(n_sessions, dtype=np.int64)
    np.maximum.at(span, rows["session"], rows["t"])
    hour = rng.choice(24, size=n_sessions, p=_hour_weights())
    start = hour * 3600 + rng.integers(0, 3600, size=n_sessions)
    start = np.clip(np.minimum(start, DAY_SECONDS - 1 - span), 0, None)
    secs = np.minimum(start[rows["session"]] + rows["t"], DAY_SECONDS - 1)
    order = np.lexsort((rows["event"], rows["session"], secs))
    day_us = int((datetime(day.year, day.month, day.day) - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    frame = pl.DataFrame(
        {
            "user_id": users[rows["session"][order]].astype(np.int64) + 1,
            "item_id": rows["item"][order].astype(np.int64) + 1,
            "event_type": np.array(EVENT_CODES)[rows["event"][order]],
            "value": np.ones(order.size),
            "ts": day_us + secs[order].astype(np.int64) * 1_000_000,
            "session_id": day.toordinal() * SESSION_ID_STRIDE + rows["session"][order].astype(np.int64),
        }
    )
    return frame.select(
        "user_id",
        "item_id",
        "event_type",
        "value",
        pl.col("ts").cast(pl.Datetime("us")),
        pl.col("ts").cast(pl.Datetime("us")).dt.date().alias("event_date"),
        "session_id",
        pl.lit("synthetic").alias("source"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("seq"),  # the day's rows in generation order
    ).select([pl.col(k).cast(v) for k, v in INTERACTION_SCHEMA.items()])


SYNTHETIC_FORMAT = taobao_format((Field("session_id", "id"),))
_BEHAVIOR_CODE = {"view": "pv", "cart": "cart", "fav": "fav", "buy": "buy"}


def render_lines(world: SyntheticWorld, day_rows: pl.DataFrame) -> pl.Series:
    """Taobao CSV lines (plus session_id) for generated rows."""
    category = pl.Series(world.item_category.astype(np.int64))
    return day_rows.select(
        pl.concat_str(
            [
                pl.col("user_id").cast(pl.Utf8),
                pl.col("item_id").cast(pl.Utf8),
                pl.col("item_id").sub(1).map_batches(lambda s: category.gather(s), return_dtype=pl.Int64).cast(pl.Utf8),
                pl.col("event_type").replace_strict(_BEHAVIOR_CODE, return_dtype=pl.Utf8),
                pl.col("ts").dt.epoch("s").cast(pl.Utf8),
                pl.col("session_id").cast(pl.Utf8),
            ],
            separator=",",
        ).alias("raw_line")
    )["raw_line"]


CORRUPTIONS = ("column_count", "behavior", "negative_id", "ts_outside_day")


def corrupt_lines(lines: pl.Series, fraction: float, rng: np.random.Generator) -> pl.Series:
    """Replace ``fraction`` of ``lines`` by malformed variants, rotating over CORRUPTIONS."""
    n_bad = int(round(fraction * lines.len()))
    if n_bad == 0:
        return lines
    pos = np.sort(rng.choice(lines.len(), size=n_bad, replace=False))
    kind = np.full(lines.len(), -1, dtype=np.int8)
    kind[pos] = np.arange(n_bad) % len(CORRUPTIONS)
    parts = pl.col("raw_line").str.split(",")
    k = pl.col("kind")
    frame = pl.DataFrame({"raw_line": lines, "kind": kind}).with_columns(
        pl.when(k == 0)
        .then(parts.list.head(5).list.join(","))
        .when(k == 1)
        .then(pl.concat_str([parts.list.head(3).list.join(","), pl.lit("zz"), parts.list.tail(2).list.join(",")], separator=","))
        .when(k == 2)
        .then(pl.concat_str([pl.lit("-"), pl.col("raw_line")]))
        .when(k == 3)
        .then(
            pl.concat_str(
                [
                    parts.list.head(4).list.join(","),
                    (parts.list.get(4).cast(pl.Int64) + 2 * DAY_SECONDS).cast(pl.Utf8),
                    parts.list.get(5),
                ],
                separator=",",
            )
        )
        .otherwise(pl.col("raw_line"))
        .alias("raw_line")
    )
    return frame["raw_line"]


class SyntheticReader:
    """``DatasetReader`` over generated days, validated through the Taobao line parser."""

    def __init__(
        self,
        config: SyntheticConfig = SyntheticConfig(),
        corrupt_days: Mapping[date, float] | None = None,
        world: SyntheticWorld | None = None,
    ):
        self.config = config
        self.world = world or SyntheticWorld.build(config)
        self.corrupt_days = dict(corrupt_days or {})
        self.name = "synthetic"

    def date_bounds(self) -> tuple[date, date]:
        return self.config.start, self.config.end

    def day_path(self, day: date) -> str:
        return f"synthetic://seed={self.config.seed}/{day.isoformat()}.csv"

    def read_day(self, day: date) -> ParsedBatch:
        lines = render_lines(self.world, generate_day(self.world, day))
        if day in self.corrupt_days:
            rng = np.random.default_rng([self.config.seed, 3, day.toordinal()])
            lines = corrupt_lines(lines, self.corrupt_days[day], rng)
        parsed = SYNTHETIC_FORMAT.parse(lines_frame(lines))
        routed = route(parsed, self.date_bounds(), file_day=day).collect()
        return finalize(routed, source_name=self.name, source_path=self.day_path(day))

    def read_window(self, start: date, end: date) -> ParsedBatch:
        lo, hi = self.date_bounds()
        days = [max(start, lo) + timedelta(days=k) for k in range((min(end, hi) - max(start, lo)).days + 1)]
        return ParsedBatch.concat([self.read_day(d) for d in days])

    def items(self) -> pl.DataFrame:
        return self.world.items()

    def users(self) -> pl.DataFrame:
        return self.world.users()
