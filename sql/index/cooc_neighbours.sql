-- The co-occurrence item-to-item index (recsys.channels.item_index.build_cooc_index with its defaults:
-- user_weighting="log", normalize="cosine", EVENT_WEIGHTS) as one statement for both engines: DuckDB
-- runs it in the warehouse, Spark on the lake through resources/engine.py's to_spark_sql.
--
-- Input: staging.split's history folds, train ($with_valid = false, the valid fold's history) or
-- train + valid ($with_valid = true, the test fold's history). Parameters: $depth (list depth),
-- $window_us (pseudo-session gap in microseconds: window_hours=24.0 is 86400000000), $max_items (the
-- per-user cap of distinct items, 200).
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
-- mirrored afterwards); with items per user capped at $max_items a basket holds at most $max_items
-- items, so a user adds at most $max_items^2 / 2 join rows (20,000 at the default cap), and the
-- aggregate (item, neighbour) table holds every co-occurring pair before the top-$depth cut.
WITH event_weights AS (  -- mirrors recsys.channels.base.EVENT_WEIGHTS (tests/resources/test_engine_item_index.py checks it); other types weigh 1.0
    SELECT event_type, CAST(weight AS DOUBLE) AS weight
    FROM (VALUES ('view', 1.0), ('click', 1.0), ('rate', 1.0), ('fav', 2.0), ('cart', 3.0), ('buy', 4.0)) AS t(event_type, weight)
),
history AS (
    SELECT h.user_id, h.item_id, h.ts, h.seq, h.session_id, COALESCE(ew.weight, CAST(1.0 AS DOUBLE)) AS w
    FROM staging.split AS h
    LEFT JOIN event_weights AS ew ON ew.event_type = h.event_type
    WHERE h.fold = 'train' OR ($with_valid AND h.fold = 'valid')
),
item_first AS (  -- the builder's dense item position: first appearance in the event order
    SELECT item_id, ts AS first_ts, seq AS first_seq
    FROM (
        SELECT item_id, ts, seq, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY ts ASC, seq ASC NULLS FIRST) AS k
        FROM history
    ) AS firsts
    WHERE k = 1
),
user_items AS (  -- each user's $max_items most recently touched distinct items
    SELECT user_id, item_id
    FROM (
        SELECT user_id, item_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY last_k ASC) AS recency
        FROM (
            SELECT user_id, item_id, MIN(k) AS last_k
            FROM (
                SELECT user_id, item_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts DESC, seq DESC NULLS LAST) AS k
                FROM history
            ) AS from_latest
            GROUP BY user_id, item_id
        ) AS last_touch
    ) AS ranked
    WHERE recency <= $max_items
),
user_weight AS (  -- 1 / ln(1 + n_u), n_u = distinct items after the cap
    SELECT user_id, 1.0 / LN(1.0 + COUNT(*)) AS uw
    FROM user_items
    GROUP BY user_id
),
capped AS (
    SELECT h.user_id, h.item_id, h.ts, h.seq, h.session_id, h.w,
           CASE
               WHEN h.session_id IS NULL
                   AND DATE_DIFF('microsecond',
                                 LAG(h.ts) OVER (PARTITION BY h.user_id, h.session_id IS NULL ORDER BY h.ts ASC, h.seq ASC NULLS FIRST),
                                 h.ts) > $window_us
               THEN 1 ELSE 0
           END AS cut
    FROM history AS h
    JOIN user_items AS ui ON ui.user_id = h.user_id AND ui.item_id = h.item_id
),
cells AS (  -- one row per (basket, item): basket = (user, sessionless, key), key = session_id or pseudo-session number
    SELECT user_id, sessionless, basket_key, item_id, MAX(w) AS w
    FROM (
        SELECT user_id, session_id IS NULL AS sessionless, item_id, w,
               CASE
                   WHEN session_id IS NULL
                   THEN SUM(cut) OVER (PARTITION BY user_id, session_id IS NULL ORDER BY ts ASC, seq ASC NULLS FIRST
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                   ELSE session_id
               END AS basket_key
        FROM capped
    ) AS events
    GROUP BY user_id, sessionless, basket_key, item_id
),
weighted AS (
    SELECT c.user_id, c.sessionless, c.basket_key, c.item_id, c.w, u.uw
    FROM cells AS c
    JOIN user_weight AS u ON u.user_id = c.user_id
),
item_mass AS (  -- N_i and the support (baskets holding the item)
    SELECT item_id, SUM(w * w * uw) AS mass, COUNT(*) AS support
    FROM weighted
    GROUP BY item_id
),
half_pairs AS (  -- the per-basket self-join, each unordered pair once
    SELECT a.item_id AS item_a, b.item_id AS item_b, SUM(a.w * b.w * a.uw) AS cooc, COUNT(*) AS n_baskets
    FROM weighted AS a
    JOIN weighted AS b
        ON b.user_id = a.user_id AND b.sessionless = a.sessionless AND b.basket_key = a.basket_key AND b.item_id > a.item_id
    GROUP BY a.item_id, b.item_id
),
pairs AS (
    SELECT item_a AS item_id, item_b AS neighbour_id, cooc, n_baskets FROM half_pairs
    UNION ALL
    SELECT item_b AS item_id, item_a AS neighbour_id, cooc, n_baskets FROM half_pairs
),
scored AS (
    SELECT p.item_id, p.neighbour_id, p.cooc / SQRT(mi.mass * mn.mass) AS score, CAST(p.n_baskets AS DOUBLE) AS n_baskets,
           mn.support, f.first_ts, f.first_seq
    FROM pairs AS p
    JOIN item_mass AS mi ON mi.item_id = p.item_id
    JOIN item_mass AS mn ON mn.item_id = p.neighbour_id
    JOIN item_first AS f ON f.item_id = p.neighbour_id
),
ranked AS (
    SELECT item_id, neighbour_id, score, n_baskets,
           ROW_NUMBER() OVER (
               PARTITION BY item_id
               ORDER BY CAST(score AS REAL) DESC, support DESC, first_ts ASC, first_seq ASC NULLS FIRST, neighbour_id ASC
           ) AS k
    FROM scored
)
SELECT item_id, neighbour_id, score, n_baskets AS "count", CAST(k AS INTEGER) AS "rank"
FROM ranked
WHERE k <= $depth
