-- The train fold's size, its events at or after $start (OutRank's label window; none for a null $start)
-- and its last timestamp.
SELECT count(*) AS n_train, count(*) FILTER (WHERE ts >= $start) AS n_window, max(ts) AS last_ts
FROM staging.split
WHERE fold = 'train'
