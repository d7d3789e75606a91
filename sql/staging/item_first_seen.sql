-- When each item first appeared in the clean log: the catalogue a fold may know is the items seen by
-- the end of its history (plus catalogue items never interacted with), never items of its future.
SELECT item_id, min(ts) AS first_seen
FROM staging.interactions
GROUP BY item_id
