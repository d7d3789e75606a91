-- What serving.recommendations holds (orchestration/summary.py): the model that produced it, whether the registry
-- marks that version promoted, the run that trained it, its valid NDCG@10 and promotion-gate verdict, its size.
WITH served AS (
    SELECT model, model_version, count(*) AS n_rows, count(DISTINCT user_id) AS n_users, min(user_id) AS example_user
    FROM serving.recommendations
    GROUP BY model, model_version
),
registered AS (  -- one content hash can be saved by several runs: prefer the promoted row, then the latest
    SELECT name, version, promoted, run_id, gate_passed,
           json_extract(metrics, '$.valid_ndcg10')::DOUBLE AS valid_ndcg10,
           row_number() OVER (PARTITION BY name, version ORDER BY coalesce(promoted, FALSE) DESC, trained_at DESC) AS pick
    FROM models.registry
)
SELECT s.model, s.model_version, s.n_rows, s.n_users, s.example_user,
       coalesce(r.promoted, FALSE) AS promoted, r.run_id AS trained_run_id, r.valid_ndcg10, r.gate_passed
FROM served AS s
LEFT JOIN registered AS r ON r.name = s.model AND r.version = s.model_version AND r.pick = 1
ORDER BY s.n_rows DESC
