-- Which candidate channels proposed each of one user's pool items, and at what rank (orchestration/recommend.py).
-- candidates.pool is wide (<channel>__score, <channel>__rank per channel); UNPIVOT drops the channels that did not
-- propose the item (NULL rank).
SELECT item_id, regexp_replace(col, '__rank$', '') AS channel, CAST(rank AS INTEGER) AS rank
FROM (
    UNPIVOT (
        SELECT user_id, item_id, COLUMNS('__rank$')
        FROM candidates.pool
        WHERE fold = 'test' AND user_id = $user_id AND item_id IN (SELECT unnest($items))
    )
    ON COLUMNS('__rank$') INTO NAME col VALUE rank
)
ORDER BY item_id, rank, channel
