-- The Swing item-to-item index (recsys.channels.item_index.build_swing_index with its defaults:
-- alpha=1.0, max_items_per_user=200, max_users_per_item=300) as one statement for both engines: DuckDB
-- runs it in the warehouse, Spark on the lake through resources/engine.py's to_spark_sql.
--
-- Input: staging.split's history folds, train ($with_valid = false, the valid fold's history) or
-- train + valid ($with_valid = true, the test fold's history). Parameters: $depth (list depth),
-- $alpha (DOUBLE, the builder's alpha, 1.0), $max_items (the per-user cap of distinct items,
-- max_items_per_user, 200), $max_users (the per-item cap of users, max_users_per_item, 300); the
-- builder's None for a cap is a value above any user's (item's) count.
-- Output: item_id, neighbour_id, score (DOUBLE swing), count (DOUBLE, user pairs holding both), rank
-- (1-based, best first), rank <= $depth, never the item itself.
--
-- Semantics, step by step as in the builder:
--   * event order is (ts, seq), seq NULLS FIRST as polars sorts it; exact when (ts, seq) is unique
--     (the builder breaks a (ts, seq) tie by row order, which SQL does not see);
--   * a (user, item) cell is "touched" at the user's last event on the item in that order; event
--     types and weights play no part (Swing is binary);
--   * first the user cap: a user keeps his $max_items distinct items last touched; then, on what is
--     left, the item cap: an item keeps the $max_users users who touched it last (by the cell's last
--     event in the global event order);
--   * I_u = the user's items after both caps; w_u = (|I_u| + 5)^-0.35;
--   * for every user pair u < v sharing an item, overlap = |I_u ∩ I_v|; only pairs with overlap >= 2
--     can add to an i != j pair; each such pair adds k_uv = w_u w_v / ($alpha + overlap) to every
--     ordered pair (i, j), i != j, of its common items: score = swing(i, j) = sum of k_uv, count = the
--     number of those user pairs;
--   * order: score, then the neighbour's support (user pairs with overlap >= 2 holding it, the count
--     the builder's kernel ranks its columns by; descending), then its dense position in the builder
--     (IdIndex.from_values: first appearance in the event order), so exact ties are broken, also at the
--     depth cut, as the builder breaks them. The builder sums float32 terms; this statement sums in
--     DOUBLE and ranks on the score rounded to FLOAT (REAL), so that equal scores summed in another
--     order still tie; only near ties (within float32 summation error) may come out in another order.
--
-- Cost: the user-pair self-join emits, per item, |U_i| (|U_i| - 1) / 2 rows: sum over items of |U_i|^2
-- / 2 in all, bounded by the item cap ($max_users ($max_users - 1) / 2 = 44,850 rows per item at 300),
-- the same triples the builder materializes (_pairs_within_groups). The (user pair) aggregate holds
-- every pair sharing an item; the item-pair self-join then emits, per user pair with overlap o >= 2,
-- o (o - 1) / 2 rows (o <= $max_items), and the (item, neighbour) aggregate holds every pair with a
-- supporting user pair before the top-$depth cut. Without the item cap a popular item makes the first
-- join quadratic in its audience.
WITH history AS (  -- the history folds
    SELECT user_id, item_id, ts, seq
    FROM staging.split
    WHERE fold = 'train' OR ($with_valid AND fold = 'valid')
),
first_seen AS (  -- each item's first event in the event order: its dense position in the builder
    SELECT item_id, ts AS first_ts, seq AS first_seq
    FROM (
        SELECT item_id, ts, seq, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY ts ASC, seq ASC NULLS FIRST) AS k
        FROM history
    ) AS f
    WHERE k = 1
),
touched AS (  -- one row per (user, item): the user's last event on it
    SELECT user_id, item_id, ts, seq
    FROM (
        SELECT user_id, item_id, ts, seq,
               ROW_NUMBER() OVER (PARTITION BY user_id, item_id ORDER BY ts DESC, seq DESC NULLS LAST) AS k
        FROM history
    ) AS t
    WHERE k = 1
),
user_capped AS (  -- the user's $max_items items last touched
    SELECT user_id, item_id, ts, seq
    FROM (
        SELECT user_id, item_id, ts, seq,
               ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts DESC, seq DESC NULLS LAST) AS recency
        FROM touched
    ) AS c
    WHERE recency <= $max_items
),
cells AS (  -- then the item's $max_users users who touched it last
    SELECT user_id, item_id
    FROM (
        SELECT user_id, item_id,
               ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY ts DESC, seq DESC NULLS LAST) AS recency
        FROM user_capped
    ) AS c
    WHERE recency <= $max_users
),
user_weights AS (  -- w_u = (|I_u| + 5)^-0.35 on the user's items after both caps
    SELECT user_id, POWER(CAST(COUNT(*) AS DOUBLE) + 5.0, -0.35) AS w_u
    FROM cells
    GROUP BY user_id
),
triples AS (  -- (u, v, item), u < v, both holding the item; overlap = |I_u ∩ I_v|
    SELECT a.user_id AS user_u, b.user_id AS user_v, a.item_id,
           COUNT(*) OVER (PARTITION BY a.user_id, b.user_id) AS overlap
    FROM cells AS a
    JOIN cells AS b ON b.item_id = a.item_id AND b.user_id > a.user_id
),
useful AS (  -- the user pairs sharing >= 2 items, with their weight k_uv
    SELECT t.user_u, t.user_v, t.item_id, wu.w_u * wv.w_u / ($alpha + CAST(t.overlap AS DOUBLE)) AS k
    FROM triples AS t
    JOIN user_weights AS wu ON wu.user_id = t.user_u
    JOIN user_weights AS wv ON wv.user_id = t.user_v
    WHERE t.overlap >= 2
),
items AS (  -- support: the user pairs (overlap >= 2) holding the item, and its first event
    SELECT u.item_id, COUNT(*) AS support, MIN(f.first_ts) AS first_ts, MIN(f.first_seq) AS first_seq
    FROM useful AS u
    JOIN first_seen AS f ON f.item_id = u.item_id
    GROUP BY u.item_id
),
half_pairs AS (  -- the per-user-pair self-join, each unordered item pair once
    SELECT a.item_id AS item_a, b.item_id AS item_b, SUM(a.k) AS swing, COUNT(*) AS n_pairs
    FROM useful AS a
    JOIN useful AS b ON b.user_u = a.user_u AND b.user_v = a.user_v AND b.item_id > a.item_id
    GROUP BY a.item_id, b.item_id
),
pairs AS (  -- both directions
    SELECT CASE WHEN d.flip THEN item_b ELSE item_a END AS item_id, CASE WHEN d.flip THEN item_a ELSE item_b END AS neighbour_id,
           swing, n_pairs
    FROM half_pairs
    CROSS JOIN (VALUES (FALSE), (TRUE)) AS d(flip)
),
ranked AS (
    SELECT p.item_id, p.neighbour_id, p.swing AS score, CAST(p.n_pairs AS DOUBLE) AS n_pairs,
           ROW_NUMBER() OVER (
               PARTITION BY p.item_id
               ORDER BY CAST(p.swing AS REAL) DESC, n.support DESC, n.first_ts ASC, n.first_seq ASC NULLS FIRST, p.neighbour_id ASC
           ) AS k
    FROM pairs AS p
    JOIN items AS n ON n.item_id = p.neighbour_id
)
SELECT item_id, neighbour_id, score, n_pairs AS "count", CAST(k AS INTEGER) AS "rank"
FROM ranked
WHERE k <= $depth
