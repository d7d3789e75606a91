-- NDCG@10 (test fold, all users) of the rankers and the pool over the last runs of one dataset and
-- protocol, newest first: the "past runs" table of the evaluation asset page.
SELECT run_id, cutoff, min(evaluated_at) AS evaluated_at, stage, value AS ndcg10
FROM eval.metrics
WHERE metric = 'ndcg' AND k = 10 AND cohort = 'all' AND fold = 'test'
  AND stage IN ('lgbm_ranker', 'sequence_ranker', 'pool')
  AND dataset = $dataset AND protocol = $protocol
  AND coalesce(cutoff, '') <> 'pooled'
GROUP BY run_id, cutoff, stage, value
ORDER BY evaluated_at DESC
LIMIT 30
