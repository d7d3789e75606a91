"""Evaluating at scale: a seeded uniform sample of users when there are more than the budget.

API::

    order = users_in_event_order(target)                 # each user once, by their first event (ts, seq)
    kept, info = sample_users(order, budget=50_000, seed=0)
    kept, info = sample_in_event_order(users, events, budget, seed)  # the same, from a set of users; sorted by id
    kept = sample_within_size(order, sizes, budget=1_000_000, seed=0, first=None)  # whole users within a size budget
    info.describe("test users")   # "50,000 of 1,234,567 test users (seeded uniform sample, seed 0)"
    sample_note(info, widths)     # ... "; NDCG@10 95% interval width 0.004–0.006 across stages"

Per-user evaluation costs grow with the number of users: every stage's per-user rows, the
bootstrap (n_boot × users per cohort and stage), the paired tests and eval.per_user. Past a budget
of users, the metrics are taken over a uniform sample of the users instead: every user has the same
chance budget / n of being kept, the size is exactly ``budget``, and the intervals stay honest
(they are the bootstrap over the sampled users, so they widen as the sample shrinks; the report
states the sample and the NDCG@10 interval width).

Which users is a function of (the canonical order, budget, seed) only, never of the id values:
``sample_users`` draws positions ``0..n-1`` of the order it is given (numpy's seeded generator,
without replacement) and keeps the users at those positions, in that order. The order is
``users_in_event_order``: each user where their first event falls in the canonical event order
(ts, seq) — the same rule IdIndex uses to number ids (first appearance), and one that relabelling
ids cannot move (a seeded hash of the id, as the rankers' hold-out uses, would pick other users
after a relabelling). Under a budget at least the number of users, every user is kept in the
given order and nothing changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from recsys.schema import EVENT_ORDER

METHOD = "seeded uniform sample"


@dataclass(frozen=True)
class UserSample:
    """What ``sample_users`` did: n_sampled of n_users kept (all of them when ``sampled`` is false)."""

    n_users: int
    n_sampled: int
    budget: int
    seed: int

    @property
    def sampled(self) -> bool:
        return self.n_sampled < self.n_users

    def describe(self, who: str = "test users") -> str:
        """The words for it: "N of M <who> (seeded uniform sample, seed S)", or "all M <who>"."""
        if not self.sampled:
            return f"all {self.n_users:,} {who}"
        return f"{self.n_sampled:,} of {self.n_users:,} {who} ({METHOD}, seed {self.seed})"

    def as_dict(self) -> dict:
        return {**asdict(self), "sampled": self.sampled, "method": METHOD if self.sampled else "all"}


def users_in_event_order(events: pl.DataFrame) -> pl.Series:
    """``user_id`` of ``events`` once each, ordered by the user's first event in (ts, seq) order.

    The sort is stable: events that tie on (ts, seq) (possible only across sources) keep their input order."""
    order = [c for c in EVENT_ORDER if c in events.columns]
    if not order:
        raise ValueError(f"events need the order columns {EVENT_ORDER} to order users by first appearance")
    return events.select("user_id", *order).sort(order, maintain_order=True)["user_id"].unique(maintain_order=True)


def sample_users(user_ids: pl.Series, budget: int, seed: int = 0) -> tuple[pl.Series, UserSample]:
    """(kept ids in the given order, what was done): all ids when len <= budget, else ``budget`` of
    them drawn uniformly without replacement by position (seeded), so relabelling ids never changes who."""
    if budget < 1:
        raise ValueError(f"budget must be a whole number >= 1, got {budget}")
    ids = user_ids if isinstance(user_ids, pl.Series) else pl.Series("user_id", user_ids)
    if ids.is_duplicated().any():
        raise ValueError("user_ids repeat a user: pass each user once, in the canonical order (users_in_event_order)")
    n = ids.len()
    if n <= budget:
        return ids, UserSample(n_users=n, n_sampled=n, budget=budget, seed=seed)
    positions = np.sort(np.random.default_rng(seed).choice(n, size=budget, replace=False))
    return ids.gather(positions), UserSample(n_users=n, n_sampled=budget, budget=budget, seed=seed)


def sample_in_event_order(users: pl.Series, events: pl.DataFrame, budget: int, seed: int = 0) -> tuple[pl.Series, UserSample]:
    """(kept ids, what was done) for ``users`` (each once): all of them, as given, within ``budget``;
    past it, ``budget`` of them drawn by ``sample_users`` over their order of first event in ``events``
    (``users_in_event_order``; every user needs an event there), returned sorted by id."""
    n = users.len()
    if n <= budget:
        return users, UserSample(n_users=n, n_sampled=n, budget=budget, seed=seed)
    order = users_in_event_order(events.filter(pl.col("user_id").is_in(users.cast(events.schema["user_id"]).implode())))
    if order.len() != n:
        raise ValueError(f"{n - order.len()} of {n} users have no event to order them by")
    kept, info = sample_users(order, budget, seed)
    return kept.sort(), info


def sample_within_size(order: pl.Series, sizes: pl.DataFrame, budget: int, seed: int = 0, first: pl.Series | None = None) -> pl.Series:
    """Whole users whose summed size stays within ``budget`` (events of their history, rows of their lists).

    ``order``: every candidate user once, in the canonical order (``users_in_event_order``); ``sizes``:
    ``user_id, n``. The ``first`` users are always kept (even past the budget: the caller needs them
    whole); then the other users of ``order`` in a seeded random permutation of their positions, as a
    prefix: the first user that would break the budget ends the draw, so every user has the same chance
    whatever their size. Which users is a function of (order, sizes, budget, seed) only, never of the id
    values. Returns the kept ids, ``first`` ones first."""
    if budget < 1:
        raise ValueError(f"budget must be a whole number >= 1, got {budget}")
    first = pl.Series("user_id", [], dtype=order.dtype) if first is None else first.cast(order.dtype)
    n_of = dict(zip(sizes["user_id"].to_list(), sizes["n"].to_list()))
    kept = [u for u in first.to_list() if u in n_of]
    used = sum(n_of[u] for u in kept)
    rest = order.filter(~order.is_in(first.implode()))
    for u in rest.gather(np.random.default_rng(seed).permutation(rest.len())).to_list():
        if used + n_of.get(u, 0) > budget:
            break
        used += n_of.get(u, 0)
        kept.append(u)
    return pl.Series("user_id", kept, dtype=order.dtype)


def sample_note(sample: UserSample | dict | None, widths=(), who: str = "test users", metric: str = "NDCG@10") -> str:
    """The line a report prints: who was scored and how wide the 95% intervals of ``metric`` are.

    ``sample`` is a UserSample or its ``as_dict()`` / an eval.user_sample row (None: not recorded);
    ``widths`` are the stages' ci_high − ci_low. E.g. "1,000 of 2,340 test users (seeded uniform
    sample, seed 0); NDCG@10 95% interval width 0.021–0.034 across stages"."""
    if isinstance(sample, dict):
        sample = UserSample(**{k: int(sample[k]) for k in ("n_users", "n_sampled", "budget", "seed")})
    parts = [sample.describe(who)] if sample is not None else []
    widths = sorted(float(w) for w in widths if w is not None and np.isfinite(w))
    if widths:
        span = f"{widths[0]:.3f}" if len(widths) == 1 or widths[0] == widths[-1] else f"{widths[0]:.3f}–{widths[-1]:.3f} across stages"
        parts.append(f"{metric} 95% interval width {span}")
    return "; ".join(parts)
