-- features.event_features: one row per training interaction, a binary label and categorical features.
-- Behaviour aggregates use only events strictly before the row's timestamp (RANGE ... PRECEDING).
-- Label: rating >= $min_positive_rating for `rate` events; otherwise, for view events, whether the
-- same user carted, faved or bought the item on the same day.
WITH base AS (
    SELECT s.*, i.category_id
    FROM staging.split AS s
    LEFT JOIN raw.items AS i USING (item_id)
    WHERE s.fold = 'train'
),
engaged AS (
    SELECT DISTINCT user_id, item_id, event_date
    FROM base
    WHERE event_type IN ('cart', 'fav', 'buy')
),
events AS (
    SELECT b.*,
           CASE WHEN b.event_type = 'rate' THEN CAST(b.value >= $min_positive_rating AS INTEGER)
                ELSE CAST(e.user_id IS NOT NULL AS INTEGER) END AS label
    FROM base AS b
    LEFT JOIN engaged AS e USING (user_id, item_id, event_date)
    WHERE b.event_type IN ('rate', 'view')
),
history AS (
    SELECT *,
        count(*) OVER (PARTITION BY user_id ORDER BY ts
                       RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) AS user_prior_events,
        count(*) OVER (PARTITION BY item_id ORDER BY ts
                       RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) AS item_prior_events,
        count(*) OVER (PARTITION BY user_id, category_id ORDER BY ts
                       RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) AS user_cat_prior_events,
        max(ts) OVER (PARTITION BY user_id ORDER BY ts
                      RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) AS user_prev_ts
    FROM events
)
SELECT
    h.label,
    h.user_id AS user_id_raw,
    h.item_id AS item_id_raw,
    h.category_id AS item_category,
    hour(h.ts) AS ctx_hour,
    dayofweek(h.ts) AS ctx_weekday,
    CAST(floor(log2(1 + h.user_prior_events)) AS INTEGER) AS beh_user_activity,
    CAST(floor(log2(1 + h.item_prior_events)) AS INTEGER) AS beh_item_popularity,
    CASE WHEN h.user_prior_events = 0 THEN -1
         ELSE CAST(floor(10 * h.user_cat_prior_events / h.user_prior_events) AS INTEGER) END AS beh_user_category_affinity,
    CASE WHEN h.user_prev_ts IS NULL THEN -1
         ELSE CAST(floor(log2(1 + epoch(h.ts) - epoch(h.user_prev_ts))) AS INTEGER) END AS beh_recency,
    u.* EXCLUDE (user_id),
    i.* EXCLUDE (item_id, category_id, title)
FROM history AS h
LEFT JOIN raw.users AS u ON u.user_id = h.user_id
LEFT JOIN raw.items AS i ON i.item_id = h.item_id
ORDER BY h.ts, h.seq
