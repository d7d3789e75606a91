-- The newest run that wrote test-fold evaluation rows (what `make report` renders by default).
SELECT run_id
FROM eval.metrics
WHERE fold = 'test' AND ci_low IS NOT NULL
GROUP BY run_id
ORDER BY max(evaluated_at) DESC
LIMIT 1
