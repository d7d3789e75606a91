-- The pooled headline evaluation_summary wrote in one run: NDCG@$k per stage over every evaluated
-- cut-off's users, stratified bootstrap 95% interval, best first.
SELECT stage, value AS ndcg, ci_low, ci_high, n_users
FROM eval.metrics
WHERE run_id = $run_id AND cutoff = 'pooled'
  AND metric = 'ndcg' AND k = $k AND cohort = 'all' AND fold = 'test'
ORDER BY value DESC NULLS LAST, stage
