-- Every eval.metrics row of one run (its cut-off's and, when evaluation_summary ran, the pooled ones).
SELECT run_id, evaluated_at, dataset, protocol, fold, stage, cohort, metric, k, value, ci_low, ci_high, n_users, cutoff
FROM eval.metrics
WHERE run_id = $run_id
