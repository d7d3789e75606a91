-- One user's top-$k from serving.recommendations (orchestration/recommend.py) with titles, the pool's fusion
-- summary for the pair, and whether the user interacted with the item in the held-out test window.
WITH held_out AS (
    SELECT DISTINCT item_id FROM staging.split WHERE user_id = $user_id AND fold = 'test'
)
SELECT r.rank, r.item_id, i.title, r.score, r.model, r.model_version,
       p.n_channels, p.pool_rank,
       h.item_id IS NOT NULL AS in_test_window
FROM serving.recommendations AS r
LEFT JOIN raw.items AS i ON i.item_id = r.item_id
LEFT JOIN candidates.pool AS p ON p.fold = 'test' AND p.user_id = r.user_id AND p.item_id = r.item_id
LEFT JOIN held_out AS h ON h.item_id = r.item_id
WHERE r.user_id = $user_id AND r.rank <= $k
ORDER BY r.rank
