-- What the interactions contract validates for the run's days of staging.interactions: the
-- uniqueness key and unknown_ref, null when raw.items and raw.users know the event's item and user,
-- else 'item_id 42' (or 'user_id 7' when only the user is unknown), so a failure names the ids.
SELECT s.user_id, s.item_id, s.event_type, s.ts,
       CASE WHEN i.item_id IS NULL THEN concat('item_id ', s.item_id)
            WHEN u.user_id IS NULL THEN concat('user_id ', s.user_id)
       END AS unknown_ref
FROM staging.interactions AS s
LEFT JOIN (SELECT DISTINCT item_id FROM raw.items) AS i ON i.item_id = s.item_id
LEFT JOIN (SELECT DISTINCT user_id FROM raw.users) AS u ON u.user_id = s.user_id
WHERE s.event_date BETWEEN $start AND $end
  AND s.event_date IN (SELECT unnest(CAST($days AS DATE[])))
