-- One user's latest interactions (orchestration/recommend.py), newest first in the canonical (ts, seq) order,
-- with item titles and the split fold each event fell in (test = held out from the recommendations' inputs).
SELECT s.ts, s.event_date, s.event_type, s.value, s.item_id, i.title, s.fold
FROM staging.split AS s
LEFT JOIN raw.items AS i ON i.item_id = s.item_id
WHERE s.user_id = $user_id
  AND ($include_test OR s.fold <> 'test')
ORDER BY s.ts DESC, s.seq DESC
LIMIT $n
