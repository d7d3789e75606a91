-- Headline of one evaluation run (orchestration/summary.py): NDCG@$k per stage with its bootstrap 95% interval,
-- all users of the test fold, best first.
SELECT stage, value AS ndcg, ci_low, ci_high, n_users
FROM eval.metrics
WHERE run_id = $run_id
  AND metric = 'ndcg'
  AND k = $k
  AND cohort = 'all'
  AND fold = 'test'
  AND coalesce(cutoff, '') <> 'pooled'  -- this run's own cut-off; pooled rows are the backtest summary's
ORDER BY value DESC NULLS LAST, stage
