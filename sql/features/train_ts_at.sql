-- The timestamp at 0-based position $pos of the train fold's timestamps in ascending order: OutRank's
-- label window is cut at such positions (recsys.event_features.label_window_start_at).
SELECT ts
FROM staging.split
WHERE fold = 'train'
ORDER BY ts
LIMIT 1 OFFSET $pos
