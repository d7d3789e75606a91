-- Where each of $items stands among one user's ranker candidates (orchestration/recommend.py): every numeric
-- features.ranker_test column except the channel ones (shown from candidates.pool) and categorical codes, as
-- (feature, value, percentile among the user's candidates). Features constant over the user's candidates
-- (all user-level ones) say nothing about one item and are dropped.
WITH feats AS (
    UNPIVOT (
        SELECT user_id, item_id,
               CAST(COLUMNS(c -> NOT regexp_matches(c, '__(score|rank|hit)$|^cat__|^(user_id|item_id|label)$')) AS DOUBLE)
        FROM features.ranker_test
        WHERE user_id = $user_id
    )
    ON COLUMNS(* EXCLUDE (user_id, item_id)) INTO NAME feature VALUE value
),
ranked AS (
    SELECT item_id, feature, value,
           percent_rank() OVER (PARTITION BY feature ORDER BY value) AS pct,
           count(*) OVER (PARTITION BY feature) AS n_candidates,
           min(value) OVER (PARTITION BY feature) AS lo,
           max(value) OVER (PARTITION BY feature) AS hi
    FROM feats
)
SELECT item_id, feature, value, pct, n_candidates
FROM ranked
WHERE lo < hi AND item_id IN (SELECT unnest($items))
ORDER BY item_id, pct DESC, feature
