-- How many interactions one user has per split fold (orchestration/recommend.py).
SELECT fold, count(*) AS n
FROM staging.split
WHERE user_id = $user_id
GROUP BY fold
