-- The rankers' history features and labels for every (user, candidate) pair of one fold's pool
-- (recsys/rankers/features.py, "Output columns": user, item, user x item and co-occurrence features).
-- One definition for both engines: DuckDB runs it in the warehouse, Spark on the lake
-- (resources/engine.py, SqlEngine.table_beside). The channel features (per-user normalisations of the
-- pool's own scores and ranks), the categorical codes and the dtypes are added per block of users by
-- recsys.rankers.features.finish_ranker_block.
--
-- Input: staging.split (user_id, item_id, event_type, value, ts, event_date, seq, fold);
-- features.ranker_pairs (user_id, item_id: the pool's pairs, one row each);
-- features.ranker_item_categories (item_id, category_id, null where unknown);
-- features.ranker_user_cutoffs (user_id, cutoff_us: explicit per-user reference instants, usually empty).
-- Parameters: $with_valid (history = train, or train + valid: the test fold's history), $cutoff_us
-- (history = events strictly before this instant, microseconds since the epoch; 2^62 = no cut),
-- $per_user (each user's reference instant is their own last history event), $max_items (a user's
-- distinct items kept for co-occurrence: their last ones touched), $label_fold ('valid': labels from
-- that fold; '' = no labels, label 0), $graded (graded labels instead of 0/1).
--
-- Time. G = $cutoff_us, or history's last instant when there is no cut. A user's reference instant
-- ref = their explicit cut-off, else (with $per_user) their last history event, else G. A row (u, i) is
-- as of ref_u: u's own events with ts <= ref_u; item counts of any user's events with ts <= ref_u; a
-- user v counts for the co-occurrence of (a, i) when v's first events on a and on i are both at or
-- before ref_u (v's items capped to their last $max_items of the whole history). Under one global
-- reference every event is at or before it, so the as-of counts are the plain counts.
--
-- How the as-of counts run without a loop or an as-of join (neither is portable): the events and the
-- questions ("how many events of item i up to t?") are stacked in one table, ordered by (i, t, ord)
-- with ord 0 for "strictly before t", 1 for events, 2 for "at or before t"; a running sum over the
-- events' weights, read on a question's row, is its answer. The same trick counts, per needed
-- (anchor, candidate) pair, the users holding both with max(first events) <= t. Everything is
-- integers, one division or one square root per value, so DuckDB and Spark compute the same bits.
--
-- Cost: a few group-bys over history; one sort of (history events + capped user items + 3 questions per
-- distinct (item, reference instant)); the co-occurrence pair rows: sum over users v of
-- |v's capped items among anchors| x |v's capped items|, kept only for the needed (anchor, candidate)
-- pairs (at most 3 per pool row), then one sort of those rows and the questions.
WITH hist AS (  -- the history folds before the cut; ts_us: microseconds since the epoch
    SELECT user_id, item_id, event_type, value, event_date, seq, ts_us
    FROM (
        SELECT s.user_id, s.item_id, s.event_type, CAST(s.value AS DOUBLE) AS value, s.event_date, s.seq, s.fold,
               DATE_DIFF('microsecond', TIMESTAMP '1970-01-01 00:00:00', s.ts) AS ts_us
        FROM staging.split AS s
    ) AS e
    WHERE (fold = 'train' OR ($with_valid AND fold = 'valid')) AND ts_us < $cutoff_us
),
global_ref AS (
    SELECT CASE WHEN $cutoff_us < 4611686018427387904 THEN $cutoff_us ELSE MAX(ts_us) END AS g FROM hist
),
pool_users AS (
    SELECT DISTINCT user_id FROM features.ranker_pairs
),
user_ref AS (  -- ref_us: the user's reference instant
    SELECT pu.user_id, COALESCE(uc.cutoff_us, CASE WHEN $per_user THEN own.last_us END, gr.g) AS ref_us
    FROM pool_users AS pu
    CROSS JOIN global_ref AS gr
    LEFT JOIN features.ranker_user_cutoffs AS uc ON uc.user_id = pu.user_id
    LEFT JOIN (SELECT user_id, MAX(ts_us) AS last_us FROM hist GROUP BY user_id) AS own ON own.user_id = pu.user_id
),
hist_u AS (  -- the pool users' own events up to their reference instant, with the item's category
    SELECT h.user_id, h.item_id, h.event_type, h.value, h.event_date, h.seq, h.ts_us, r.ref_us, c.category_id
    FROM hist AS h
    JOIN user_ref AS r ON r.user_id = h.user_id
    LEFT JOIN features.ranker_item_categories AS c ON c.item_id = h.item_id
    WHERE h.ts_us <= r.ref_us
),
user_feats AS (
    SELECT user_id,
           COUNT(*) AS u_n_events,
           COUNT(DISTINCT item_id) AS u_n_items,
           COUNT(DISTINCT event_date) AS u_days_active,
           CAST(SUM(CASE WHEN ts_us >= ref_us - 604800000000 THEN 1 ELSE 0 END) AS BIGINT) AS u_n_events_7d,
           AVG(CASE WHEN event_type = 'rate' THEN value END) AS u_mean_rating,
           CAST(MAX(ref_us) - MAX(ts_us) AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS u_recency_days,
           CAST(MAX(ref_us) - MIN(ts_us) AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS u_tenure_days
    FROM hist_u
    GROUP BY user_id
),
ui AS (
    SELECT user_id, item_id, COUNT(*) AS ui_n_events FROM hist_u GROUP BY user_id, item_id
),
user_cat AS (
    SELECT user_id, category_id, COUNT(*) AS ui_cat_count, MAX(ts_us) AS cat_last_us
    FROM hist_u
    WHERE category_id IS NOT NULL
    GROUP BY user_id, category_id
),
own_touched AS (  -- k: 1 = the user's latest own event (ts, seq)
    SELECT user_id, item_id, category_id,
           ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts_us DESC, seq DESC NULLS LAST, item_id DESC) AS k
    FROM hist_u
),
own_last AS (
    SELECT user_id, item_id, MIN(category_id) AS category_id, MIN(k) AS last_k FROM own_touched GROUP BY user_id, item_id
),
anchors AS (  -- slot 1..3: the user's last three distinct items
    SELECT user_id, item_id AS anchor_id, category_id, slot
    FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY last_k) AS slot FROM own_last) AS o
    WHERE slot <= 3
),
touched AS (  -- every user's items over the whole history: first event, and k of their latest one
    SELECT user_id, item_id, MIN(ts_us) AS first_us, MIN(k) AS last_k
    FROM (
        SELECT user_id, item_id, ts_us,
               ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts_us DESC, seq DESC NULLS LAST, item_id DESC) AS k
        FROM hist
    ) AS t
    GROUP BY user_id, item_id
),
user_items AS (  -- capped: among the user's last $max_items distinct items (the co-occurrence's items)
    SELECT user_id, item_id, first_us,
           ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY last_k) <= $max_items AS capped
    FROM touched
),
recent AS (
    SELECT user_id, item_id, first_us FROM user_items WHERE capped
),
pairs AS (
    SELECT p.user_id, p.item_id, r.ref_us
    FROM features.ranker_pairs AS p
    JOIN user_ref AS r ON r.user_id = p.user_id
),
triples AS (  -- (row, anchor slot)
    SELECT p.user_id, p.item_id, p.ref_us, a.anchor_id, a.slot
    FROM pairs AS p
    JOIN anchors AS a ON a.user_id = p.user_id
),
item_questions AS (  -- every (item, reference instant) asked about: candidates and anchors
    SELECT DISTINCT item_id, ref_us FROM pairs
    UNION
    SELECT DISTINCT anchor_id AS item_id, ref_us FROM triples
),
item_stream AS (  -- events (ord 1) and users' first events on items (w_user; w_deg: capped ones), questions (kind 1..3)
    SELECT item_id, ts_us AS t, 1 AS ord, 0 AS kind, CAST(NULL AS BIGINT) AS ref_us,
           1 AS w_pop,
           CASE WHEN event_type IS NOT NULL THEN 1 ELSE 0 END AS w_typed,
           CASE WHEN event_type IN ('cart', 'fav', 'buy') THEN 1 ELSE 0 END AS w_conv,
           CASE WHEN event_type = 'rate' THEN 1 ELSE 0 END AS w_rate,
           CASE WHEN event_type = 'rate' AND value IS NOT NULL THEN 1 ELSE 0 END AS w_rated,
           CASE WHEN event_type = 'rate' AND value IS NOT NULL THEN value ELSE CAST(0 AS DOUBLE) END AS w_rating,
           0 AS w_user, 0 AS w_deg
    FROM hist
    UNION ALL
    SELECT item_id, first_us, 1, 0, CAST(NULL AS BIGINT), 0, 0, 0, 0, 0, CAST(0 AS DOUBLE), 1, CASE WHEN capped THEN 1 ELSE 0 END
    FROM user_items
    UNION ALL
    SELECT item_id, ref_us, 2, 1, ref_us, 0, 0, 0, 0, 0, CAST(0 AS DOUBLE), 0, 0 FROM item_questions
    UNION ALL
    SELECT item_id, ref_us - 604800000000, 0, 2, ref_us, 0, 0, 0, 0, 0, CAST(0 AS DOUBLE), 0, 0 FROM item_questions
    UNION ALL
    SELECT item_id, ref_us - 2592000000000, 0, 3, ref_us, 0, 0, 0, 0, 0, CAST(0 AS DOUBLE), 0, 0 FROM item_questions
),
item_running AS (
    SELECT item_id, kind, ref_us,
           CAST(SUM(w_pop) OVER w AS BIGINT) AS c_pop, CAST(SUM(w_typed) OVER w AS BIGINT) AS c_typed, CAST(SUM(w_conv) OVER w AS BIGINT) AS c_conv,
           CAST(SUM(w_rate) OVER w AS BIGINT) AS c_rate, CAST(SUM(w_rated) OVER w AS BIGINT) AS c_rated, SUM(w_rating) OVER w AS c_rating,
           CAST(SUM(w_user) OVER w AS BIGINT) AS c_user, CAST(SUM(w_deg) OVER w AS BIGINT) AS c_deg
    FROM item_stream
    WINDOW w AS (PARTITION BY item_id ORDER BY t, ord ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
item_answers AS (
    SELECT item_id, ref_us,
           MAX(CASE WHEN kind = 1 THEN c_pop END) AS pop,
           MAX(CASE WHEN kind = 2 THEN c_pop END) AS before_7d,
           MAX(CASE WHEN kind = 3 THEN c_pop END) AS before_30d,
           MAX(CASE WHEN kind = 1 THEN c_typed END) AS typed,
           MAX(CASE WHEN kind = 1 THEN c_conv END) AS conv,
           MAX(CASE WHEN kind = 1 THEN c_rate END) AS rate,
           MAX(CASE WHEN kind = 1 THEN c_rated END) AS rated,
           MAX(CASE WHEN kind = 1 THEN c_rating END) AS rating,
           MAX(CASE WHEN kind = 1 THEN c_user END) AS n_users,
           MAX(CASE WHEN kind = 1 THEN c_deg END) AS deg
    FROM item_running
    WHERE kind > 0
    GROUP BY item_id, ref_us
),
item_first AS (
    SELECT item_id, MIN(ts_us) AS first_us FROM hist GROUP BY item_id
),
item_feats AS (
    SELECT a.item_id, a.ref_us, a.deg,
           a.pop AS i_pop,
           a.n_users AS i_n_users,
           a.pop - a.before_7d AS i_pop_7d,
           a.pop - a.before_30d AS i_pop_30d,
           CASE WHEN a.rated > 0 THEN a.rating / CAST(a.rated AS DOUBLE) END AS i_mean_rating,
           a.rate AS i_n_ratings,
           CASE WHEN a.typed > 0 THEN CAST(a.conv AS DOUBLE) / CAST(a.typed AS DOUBLE) END AS i_conv_rate,
           CASE WHEN a.pop - a.before_30d > 0
                THEN CAST(a.pop - a.before_7d AS DOUBLE) / CAST(a.pop - a.before_30d AS DOUBLE) END AS i_trend,
           CASE WHEN a.pop > 0 THEN CAST(a.ref_us - f.first_us AS DOUBLE) / CAST(86400000000 AS DOUBLE) END AS i_age_days
    FROM item_answers AS a
    LEFT JOIN item_first AS f ON f.item_id = a.item_id
),
needed AS (  -- the (anchor, candidate) pairs some row asks about
    SELECT DISTINCT anchor_id, item_id FROM triples
),
item_codes AS (  -- a small distinct code per capped item, below 2^31 for any catalogue under 2^31 items:
                 -- (place within its bucket of item_id mod 64) x 64 + bucket; no step orders all items
    SELECT item_id, ROW_NUMBER() OVER (PARTITION BY bucket ORDER BY item_id) * 64 + bucket AS code
    FROM (SELECT item_id, ((item_id % 64) + 64) % 64 AS bucket FROM (SELECT DISTINCT item_id FROM recent) AS d) AS b
),
recent_coded AS (
    SELECT r.user_id, r.item_id, r.first_us, c.code FROM recent AS r JOIN item_codes AS c ON c.item_id = r.item_id
),
needed_keys AS (  -- a pair whose candidate no user holds has no key and no events (its count is 0)
    SELECT n.anchor_id, n.item_id, ca.code * 2147483648 + cc.code AS pair_key
    FROM needed AS n
    JOIN item_codes AS ca ON ca.item_id = n.anchor_id
    JOIN item_codes AS cc ON cc.item_id = n.item_id
),
-- per needed pair, a user holding both (capped) items, from when they hold both. The pair key is an
-- expression of both users' items alone, so the join to the needed pairs can only come after the
-- users' item pairs (joining a popular candidate to all its users first would multiply them by every
-- anchor's users; DuckDB's optimizer chose that for the two-column condition)
pair_events AS (
    SELECT nk.anchor_id, nk.item_id, GREATEST(r1.first_us, r2.first_us) AS t
    FROM recent_coded AS r1
    JOIN recent_coded AS r2 ON r2.user_id = r1.user_id
    JOIN needed_keys AS nk ON nk.pair_key = r1.code * 2147483648 + r2.code
    WHERE r1.item_id IN (SELECT anchor_id FROM needed)
),
pair_stream AS (
    SELECT anchor_id, item_id, t, 1 AS ord, 1 AS w FROM pair_events
    UNION ALL
    SELECT DISTINCT anchor_id, item_id, ref_us, 2, 0 FROM triples
),
pair_counts AS (  -- cooc: users holding both items by the reference instant
    SELECT anchor_id, item_id, t AS ref_us, cooc
    FROM (
        SELECT anchor_id, item_id, t, ord,
               CAST(SUM(w) OVER (PARTITION BY anchor_id, item_id ORDER BY t, ord ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS cooc
        FROM pair_stream
    ) AS s
    WHERE ord = 2
),
cooc AS (  -- per row, over its anchors: the last anchor's count, the sum, the best cosine
    SELECT t.user_id, t.item_id,
           CAST(SUM(CASE WHEN t.slot = 1 THEN pc.cooc ELSE 0 END) AS BIGINT) AS ui_cooc_last1,
           CAST(SUM(pc.cooc) AS BIGINT) AS ui_cooc_last3,
           MAX(CAST(pc.cooc AS DOUBLE) / SQRT(GREATEST(CAST(da.deg * dc.deg AS DOUBLE), CAST(1 AS DOUBLE)))) AS ui_cos_last3
    FROM triples AS t  -- every join finds its row; LEFT keeps the optimizer from joining the degrees on ref_us alone
    LEFT JOIN pair_counts AS pc ON pc.anchor_id = t.anchor_id AND pc.item_id = t.item_id AND pc.ref_us = t.ref_us
    LEFT JOIN item_answers AS da ON da.item_id = t.anchor_id AND da.ref_us = t.ref_us
    LEFT JOIN item_answers AS dc ON dc.item_id = t.item_id AND dc.ref_us = t.ref_us
    GROUP BY t.user_id, t.item_id
),
labels AS (
    SELECT user_id, item_id,
           MAX(CASE
                   WHEN NOT $graded THEN 1
                   WHEN event_type = 'rate' THEN 1 + CASE WHEN value >= 4 THEN 1 ELSE 0 END + CASE WHEN value >= 5 THEN 1 ELSE 0 END
                   WHEN event_type = 'fav' THEN 2
                   WHEN event_type = 'cart' THEN 3
                   WHEN event_type = 'buy' THEN 4
                   ELSE 1
               END) AS label
    FROM staging.split
    WHERE fold = $label_fold
    GROUP BY user_id, item_id
)
SELECT p.user_id, p.item_id,
       uf.u_n_events, uf.u_n_items, uf.u_days_active, uf.u_n_events_7d, uf.u_mean_rating, uf.u_recency_days, uf.u_tenure_days,
       itf.i_pop, itf.i_n_users, itf.i_pop_7d, itf.i_pop_30d, itf.i_mean_rating, itf.i_n_ratings, itf.i_conv_rate,
       itf.i_trend, itf.i_age_days,
       COALESCE(ui.ui_n_events, 0) AS ui_n_events,
       COALESCE(uc.ui_cat_count, 0) AS ui_cat_count,
       CAST(COALESCE(uc.ui_cat_count, 0) AS DOUBLE) / CAST(uf.u_n_events AS DOUBLE) AS ui_cat_share,
       CAST(p.ref_us - uc.cat_last_us AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS ui_days_since_cat,
       CASE WHEN ic.category_id IS NULL OR la.category_id IS NULL THEN NULL
            WHEN ic.category_id = la.category_id THEN 1 ELSE 0 END AS ui_same_cat_last,
       co.ui_cooc_last1, co.ui_cooc_last3, co.ui_cos_last3,
       COALESCE(lb.label, 0) AS label
FROM pairs AS p
LEFT JOIN user_feats AS uf ON uf.user_id = p.user_id
LEFT JOIN item_feats AS itf ON itf.item_id = p.item_id AND itf.ref_us = p.ref_us
LEFT JOIN ui ON ui.user_id = p.user_id AND ui.item_id = p.item_id
LEFT JOIN features.ranker_item_categories AS ic ON ic.item_id = p.item_id
LEFT JOIN user_cat AS uc ON uc.user_id = p.user_id AND uc.category_id = ic.category_id
LEFT JOIN anchors AS la ON la.user_id = p.user_id AND la.slot = 1
LEFT JOIN cooc AS co ON co.user_id = p.user_id AND co.item_id = p.item_id
LEFT JOIN labels AS lb ON lb.user_id = p.user_id AND lb.item_id = p.item_id
