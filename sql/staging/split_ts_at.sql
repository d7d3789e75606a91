-- The timestamp at 0-based position $pos of staging.interactions' timestamps in ascending order: a
-- quantile cut of the temporal_quantile split (recsys.split.quantile_cut_positions gives $pos).
SELECT ts
FROM staging.interactions
ORDER BY ts
LIMIT 1 OFFSET $pos
