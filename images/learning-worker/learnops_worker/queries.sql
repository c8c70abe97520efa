-- Every statement of the worker. Parameters are psycopg named placeholders.
-- Writes after a claim are fenced: they name the lease token and report the ids they changed;
-- an id missing from RETURNING means that lease was lost.

-- name: claim --
-- One statement: recover expired leases (requeue, or fail after the last attempt), then lock
-- the next queued jobs with SKIP LOCKED and lease them with a fresh token. With a global cap,
-- each claimed row also takes a free slot; a slot race ends in a unique violation, retried.
-- Waiting on another claim's slot is the only lock wait here (everything else is SKIP
-- LOCKED), and the claim connection's short lock_timeout turns it into a quick retry too.
WITH expired AS (
    SELECT id FROM learnops_jobs
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT 100
    FOR UPDATE SKIP LOCKED
), recovered AS (
    UPDATE learnops_jobs j
    SET status = CASE WHEN j.attempts >= %(max_attempts)s THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN j.attempts >= %(max_attempts)s THEN now() END,
        run_after = now(),
        lease_token = NULL,
        lease_expires_at = NULL,
        slot = NULL,
        last_error = 'lease expired: worker stopped heartbeating',
        errors = jsonb_path_query_array(
            j.errors || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempts, 'at', now(), 'worker', j.worker_id,
                'error', 'lease expired: worker stopped heartbeating')),
            '$[last - 19 to last]')
    FROM expired e
    WHERE j.id = e.id
    RETURNING j.id
), free_slots AS (
    SELECT s AS slot, row_number() OVER (ORDER BY random()) AS n
    FROM generate_series(1, %(global_max)s) AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM learnops_jobs r WHERE r.status = 'running' AND r.slot = s
    )
), picked AS (
    SELECT q.id, row_number() OVER () AS n
    FROM (
        SELECT id FROM learnops_jobs
        WHERE status = 'queued' AND run_after <= now() AND kind = ANY(%(kinds)s)
        ORDER BY priority DESC, run_after, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS q
)
UPDATE learnops_jobs j
SET status = 'running',
    attempts = j.attempts + 1,
    lease_token = gen_random_uuid(),
    -- clock_timestamp, not now(): if this statement waited (a slot race), the lease still
    -- runs from the moment the row is written, not from when the statement began.
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s),
    worker_id = %(worker_id)s,
    slot = f.slot,
    started_at = now()
FROM picked p LEFT JOIN free_slots f ON f.n = p.n
WHERE j.id = p.id AND (%(global_max)s = 0 OR f.slot IS NOT NULL)
RETURNING j.id, j.kind, j.payload, j.priority, j.attempts, j.lease_token, j.created_at;

-- name: heartbeat --
-- Rows are locked in id order first: heartbeat, complete and release touch overlapping sets
-- of rows from different connections, and one lock order means they can never deadlock.
WITH h AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS h(id, token)
), locked AS (
    SELECT j.id FROM learnops_jobs j JOIN h ON j.id = h.id AND j.lease_token = h.token
    WHERE j.status = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE learnops_jobs j
SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s)
FROM locked
WHERE j.id = locked.id
RETURNING j.id;

-- name: complete --
WITH c AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(results)s::text[])
        AS c(id, token, result)
), locked AS (
    SELECT j.id, c.result FROM learnops_jobs j JOIN c ON j.id = c.id AND j.lease_token = c.token
    WHERE j.status = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE learnops_jobs j
SET status = 'succeeded',
    result = locked.result::jsonb,
    lease_token = NULL,
    lease_expires_at = NULL,
    slot = NULL,
    finished_at = now()
FROM locked
WHERE j.id = locked.id
RETURNING j.id;

-- name: retry --
UPDATE learnops_jobs
SET status = 'queued',
    run_after = now() + make_interval(secs => %(delay_seconds)s),
    lease_token = NULL,
    lease_expires_at = NULL,
    slot = NULL,
    last_error = %(error)s,
    errors = jsonb_path_query_array(errors || jsonb_build_array(%(entry)s::jsonb),
                                    '$[last - 19 to last]')
WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
RETURNING id;

-- name: fail --
UPDATE learnops_jobs
SET status = 'failed',
    finished_at = now(),
    lease_token = NULL,
    lease_expires_at = NULL,
    slot = NULL,
    last_error = %(error)s,
    errors = jsonb_path_query_array(errors || jsonb_build_array(%(entry)s::jsonb),
                                    '$[last - 19 to last]')
WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
RETURNING id;

-- name: release --
-- Shutdown: hand unfinished jobs back without spending the attempt their claim counted.
WITH r AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS r(id, token)
), locked AS (
    SELECT j.id FROM learnops_jobs j JOIN r ON j.id = r.id AND j.lease_token = r.token
    WHERE j.status = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
), released AS (
    UPDATE learnops_jobs j
    SET status = 'queued',
        attempts = greatest(j.attempts - 1, 0),
        run_after = now(),
        lease_token = NULL,
        lease_expires_at = NULL,
        slot = NULL
    FROM locked
    WHERE j.id = locked.id
    RETURNING j.id
)
SELECT id, pg_notify('learnops_jobs', '') FROM released;

-- name: notify --
-- With a global cap, a finished job frees a slot that idle workers should not wait a poll for.
SELECT pg_notify('learnops_jobs', '');

-- name: enqueue --
INSERT INTO learnops_jobs (kind, payload, priority, run_after)
VALUES (%(kind)s, %(payload)s::jsonb, %(priority)s, coalesce(%(run_after)s::timestamptz, now()))
RETURNING id;

-- name: retry_failed --
WITH requeued AS (
    UPDATE learnops_jobs
    SET status = 'queued', attempts = 0, run_after = now(), finished_at = NULL
    WHERE status = 'failed' AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
    RETURNING id
)
SELECT id, pg_notify('learnops_jobs', '') FROM requeued;

-- name: stats_by_status_kind --
SELECT status, kind, count(*) FROM learnops_jobs GROUP BY status, kind ORDER BY status, kind;

-- name: stats_oldest_queued --
SELECT extract(epoch FROM now() - min(run_after))::float8
FROM learnops_jobs WHERE status = 'queued' AND run_after <= now();

-- name: stats_leases --
SELECT count(*) FILTER (WHERE lease_expires_at >= now()),
       count(*) FILTER (WHERE lease_expires_at < now())
FROM learnops_jobs WHERE status = 'running';

-- name: depth_by_status --
SELECT status, count(*) FROM learnops_jobs GROUP BY status;

-- name: cache_lock_timeout --
-- The lock wait may last a whole provider call, longer than the default statement timeout.
SELECT set_config('statement_timeout', %(timeout_ms)s, false);

-- name: cache_lock_timeout_reset --
RESET statement_timeout;

-- name: cache_lock --
-- Serialises identical inputs across workers, so a duplicate waits for the first answer.
SELECT pg_advisory_lock(hashtextextended(%(key)s, 0));

-- name: cache_unlock --
SELECT pg_advisory_unlock(hashtextextended(%(key)s, 0));

-- name: cache_get --
SELECT result FROM learnops_result_cache
WHERE handler = %(handler)s AND backend = %(backend)s AND model = %(model)s
  AND input_hash = %(input_hash)s;

-- name: cache_put --
INSERT INTO learnops_result_cache (handler, backend, model, input_hash, result)
VALUES (%(handler)s, %(backend)s, %(model)s, %(input_hash)s, %(result)s::jsonb)
ON CONFLICT DO NOTHING;

-- name: migrations_lock --
SELECT pg_advisory_xact_lock(hashtextextended('learnops_worker.migrate', 0));

-- name: migrations_table --
CREATE TABLE IF NOT EXISTS learnops_schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_applied --
SELECT version FROM learnops_schema_migrations;

-- name: migration_record --
INSERT INTO learnops_schema_migrations (version) VALUES (%(version)s);

-- name: ping --
SELECT 1;

-- name: schema_present --
SELECT to_regclass('learnops_jobs') IS NOT NULL;
