-- Loaded rows per partition for the trailing window before $start (the volume baseline).
SELECT "partition", n_loaded
FROM (
    SELECT "partition", n_loaded,
           row_number() OVER (PARTITION BY "partition" ORDER BY ingested_at DESC) AS latest
    FROM quality.ingestion_log
    WHERE "partition" < $start_key AND "partition" >= $from_key
)
WHERE latest = 1
ORDER BY "partition"
