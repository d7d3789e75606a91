-- Per user with a positive label in a ranker frame table ($table, e.g. features.ranker_valid): the
-- length of the user's candidate list. Users without a positive teach LambdaRank nothing.
SELECT user_id, count(*) AS n
FROM query_table($table)
GROUP BY user_id
HAVING bool_or(label > 0)
ORDER BY user_id
