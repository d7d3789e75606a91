-- The co-occurrence item-to-item index (recsys.channels.item_index.build_cooc_index with its defaults:
-- user_weighting="log", normalize="cosine", EVENT_WEIGHTS) as one statement for both engines: DuckDB
-- runs it in the warehouse, Spark on the lake through resources/engine.py's to_spark_sql.
--
-- Input: staging.split's history folds, train ($with_valid = false, the valid fold's history) or
-- train + valid ($with_valid = true, the test fold's history). Parameters: $depth (list depth),
-- $window_us (pseudo-session gap in microseconds, int(window_hours * 3600e6): 24.0 is 86400000000; the
-- builder's window_hours=None is a $window_us larger than any gap), $max_items (the per-user cap of
-- distinct items, 200; the builder's None is a $max_items above any user's count).
-- Output: item_id, neighbour_id, score (DOUBLE cosine), count (DOUBLE, baskets holding both), rank
-- (1-based, best first), rank <= $depth, never the item itself.
--
-- Semantics, step by step as in the builder:
--   * event order is (ts, seq), seq NULLS FIRST as polars sorts it; exact when (ts, seq) is unique
--     (the builder breaks a (ts, seq) tie by row order, which SQL does not see);
--   * a user keeps his $max_items distinct items last touched in that order; n_u = his items after the
--     cap; each of his baskets weighs 1 / ln(1 + n_u);
--   * a basket is (user, session_id) where session_id is set, else a pseudo-session of the user's
--     session-less events cut wherever two consecutive ones (after the cap) are more than $window_us
--     apart; a (basket, item) cell carries the strongest event weight seen in it;
--   * C_ij = sum over baskets of w_bi * w_bj * uw_b, N_i = sum of w_bi^2 * uw_b, score = C_ij / sqrt(N_i N_j);
--   * order: score, then the neighbour's support (baskets holding it, descending), then its dense
--     position in the builder (IdIndex.from_values: first appearance in the event order), so exact ties
--     are broken as the builder breaks them. The builder ranks on float32 sums; this statement sums in
--     DOUBLE and ranks on the score rounded to FLOAT (REAL), so that equal scores summed in another
--     order still tie; only near ties (within float32 summation error) may come out in another order.
--
-- Cost: the pair self-join emits sum over baskets of |b| (|b| - 1) / 2 rows (each unordered pair once,
-- mirrored afterwards), the same sum over baskets of |b|^2 the builder's sparse product works through.
-- A basket holds at most $max_items items (its user's kept ones), so one basket adds at most
-- $max_items ($max_items - 1) / 2 rows (19,900 at the default cap), but a user adds that per basket;
-- the (item, neighbour) aggregate holds every co-occurring pair before the top-$depth cut. No cap
-- ($max_items huge) with no window ($window_us huge: one pseudo-session per user) makes a heavy user's
-- history one quadratic basket.
WITH event_weights AS (  -- mirrors recsys.channels.base.EVENT_WEIGHTS (tests/resources/test_engine_item_index.py checks it); other types weigh 1.0
    SELECT event_type, CAST(weight AS DOUBLE) AS weight
    FROM (VALUES ('view', 1.0), ('click', 1.0), ('rate', 1.0), ('fav', 2.0), ('cart', 3.0), ('buy', 4.0)) AS t(event_type, weight)
),
history AS (  -- the history folds, weighted; k_desc: 1 = the user's latest event; first_*: the item's first event
    SELECT h.user_id, h.item_id, h.ts, h.seq, h.session_id, COALESCE(ew.weight, CAST(1.0 AS DOUBLE)) AS w,
           ROW_NUMBER() OVER (PARTITION BY h.user_id ORDER BY h.ts DESC, h.seq DESC NULLS LAST) AS k_desc,
           FIRST_VALUE(h.ts) OVER (PARTITION BY h.item_id ORDER BY h.ts ASC, h.seq ASC NULLS FIRST) AS first_ts,
           FIRST_VALUE(h.seq) OVER (PARTITION BY h.item_id ORDER BY h.ts ASC, h.seq ASC NULLS FIRST) AS first_seq
    FROM staging.split AS h
    LEFT JOIN event_weights AS ew ON ew.event_type = h.event_type
    WHERE h.fold = 'train' OR ($with_valid AND h.fold = 'valid')
),
touched AS (  -- last_k: when the user last touched the item (smaller = more recent)
    SELECT *, MIN(k_desc) OVER (PARTITION BY user_id, item_id) AS last_k
    FROM history
),
recent AS (  -- recency: the item's place among the user's distinct items, most recently touched first
    SELECT *, DENSE_RANK() OVER (PARTITION BY user_id ORDER BY last_k ASC) AS recency
    FROM touched
),
-- capped: the user's $max_items most recent items; n_u: his items after the cap; prev_ts: the previous kept
-- event of the same kind (in a session or not) in the event order
capped AS (
    SELECT user_id, item_id, ts, seq, session_id, w, first_ts, first_seq,
           MAX(recency) OVER (PARTITION BY user_id) AS n_u,
           LAG(ts) OVER (PARTITION BY user_id, session_id IS NULL ORDER BY ts ASC, seq ASC NULLS FIRST) AS prev_ts
    FROM recent
    WHERE recency <= $max_items
),
events AS (  -- basket = (user, sessionless, basket_key): the session_id, or the pseudo-session's number
    SELECT user_id, item_id, w, n_u, first_ts, first_seq, session_id IS NULL AS sessionless,
           CASE
               WHEN session_id IS NULL
               THEN SUM(CASE WHEN DATE_DIFF('microsecond', prev_ts, ts) > $window_us THEN 1 ELSE 0 END)
                        OVER (PARTITION BY user_id, session_id IS NULL ORDER BY ts ASC, seq ASC NULLS FIRST
                              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
               ELSE session_id
           END AS basket_key
    FROM capped
),
cells AS (  -- one row per (basket, item): the strongest weight; uw = 1 / ln(1 + n_u)
    SELECT user_id, sessionless, basket_key, item_id, MAX(w) AS w, 1.0 / LN(1.0 + MAX(n_u)) AS uw,
           MIN(first_ts) AS first_ts, MIN(first_seq) AS first_seq
    FROM events
    GROUP BY user_id, sessionless, basket_key, item_id
),
items AS (  -- N_i, the support (baskets holding the item) and its first event
    SELECT item_id, SUM(w * w * uw) AS mass, COUNT(*) AS support, MIN(first_ts) AS first_ts, MIN(first_seq) AS first_seq
    FROM cells
    GROUP BY item_id
),
half_pairs AS (  -- the per-basket self-join, each unordered pair once
    SELECT a.item_id AS item_a, b.item_id AS item_b, SUM(a.w * b.w * a.uw) AS cooc, COUNT(*) AS n_baskets
    FROM cells AS a
    JOIN cells AS b
        ON b.user_id = a.user_id AND b.sessionless = a.sessionless AND b.basket_key = a.basket_key AND b.item_id > a.item_id
    GROUP BY a.item_id, b.item_id
),
pairs AS (  -- both directions
    SELECT CASE WHEN d.flip THEN item_b ELSE item_a END AS item_id, CASE WHEN d.flip THEN item_a ELSE item_b END AS neighbour_id,
           cooc, n_baskets
    FROM half_pairs
    CROSS JOIN (VALUES (FALSE), (TRUE)) AS d(flip)
),
ranked AS (
    SELECT p.item_id, p.neighbour_id, p.cooc / SQRT(i.mass * n.mass) AS score, CAST(p.n_baskets AS DOUBLE) AS n_baskets,
           ROW_NUMBER() OVER (
               PARTITION BY p.item_id
               ORDER BY CAST(p.cooc / SQRT(i.mass * n.mass) AS REAL) DESC, n.support DESC, n.first_ts ASC,
                        n.first_seq ASC NULLS FIRST, p.neighbour_id ASC
           ) AS k
    FROM pairs AS p
    JOIN items AS i ON i.item_id = p.item_id
    JOIN items AS n ON n.item_id = p.neighbour_id
)
SELECT item_id, neighbour_id, score, n_baskets AS "count", CAST(k AS INTEGER) AS "rank"
FROM ranked
WHERE k <= $depth
