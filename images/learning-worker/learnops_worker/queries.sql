-- Every statement of the worker. Parameters are psycopg named placeholders.
-- Writes after a claim are fenced: they name the lease token and report the ids they changed;
-- an id missing from RETURNING means that lease was lost.

-- name: claim --
-- One statement: recover expired leases (requeue, or fail after the last attempt), then lock
-- the next queued jobs with SKIP LOCKED and lease them with a fresh token. With a global cap,
-- each claimed row also takes a free slot; a slot race ends in a unique violation, retried.
-- Waiting on another claim's slot is the only lock wait here (everything else is SKIP
-- LOCKED), and the claim connection's short lock_timeout turns it into a quick retry too.
-- The payload comes back as text: the handler's thread decodes it, so a payload Python
-- cannot decode fails only its own job.
WITH expired AS (
    SELECT id FROM learnops_jobs
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT 100
    FOR UPDATE SKIP LOCKED
), recovered AS (
    UPDATE learnops_jobs j
    SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                      WHEN j.attempts >= %(max_attempts)s THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL
                             OR j.attempts >= %(max_attempts)s THEN now() END,
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
RETURNING j.id, j.kind, j.payload::text, j.priority, j.attempts, j.lease_token, j.created_at;

-- name: heartbeat --
-- Rows are locked in id order first: heartbeat, complete and release touch overlapping sets
-- of rows from different connections, and one lock order means they can never deadlock.
-- The second column tells the handler that its job was cancelled.
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
RETURNING j.id, j.cancel_requested_at IS NOT NULL;

-- name: complete --
-- A job cancelled while it ran ends `cancelled`, its result discarded.
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
SET status = CASE WHEN j.cancel_requested_at IS NULL THEN 'succeeded' ELSE 'cancelled' END,
    result = CASE WHEN j.cancel_requested_at IS NULL THEN locked.result::jsonb END,
    lease_token = NULL,
    lease_expires_at = NULL,
    slot = NULL,
    finished_at = now()
FROM locked
WHERE j.id = locked.id
RETURNING j.id, j.status;

-- name: retry --
UPDATE learnops_jobs
SET status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
    finished_at = CASE WHEN cancel_requested_at IS NOT NULL THEN now() END,
    run_after = now() + make_interval(secs => %(delay_seconds)s),
    lease_token = NULL,
    lease_expires_at = NULL,
    slot = NULL,
    last_error = %(error)s,
    errors = jsonb_path_query_array(errors || jsonb_build_array(%(entry)s::jsonb),
                                    '$[last - 19 to last]')
WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
RETURNING id, status;

-- name: fail --
UPDATE learnops_jobs
SET status = CASE WHEN cancel_requested_at IS NULL THEN 'failed' ELSE 'cancelled' END,
    finished_at = now(),
    lease_token = NULL,
    lease_expires_at = NULL,
    slot = NULL,
    last_error = %(error)s,
    errors = jsonb_path_query_array(errors || jsonb_build_array(%(entry)s::jsonb),
                                    '$[last - 19 to last]')
WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
RETURNING id, status;

-- name: release --
-- Shutdown: hand unfinished jobs back. A job whose handler never started gets the attempt
-- its claim counted back; one whose handler ran keeps it (else a handler that hangs or
-- crashes its worker would run forever), and fails if that was its last attempt.
WITH r AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(started)s::boolean[])
        AS r(id, token, started)
), locked AS (
    SELECT j.id, r.started FROM learnops_jobs j JOIN r ON j.id = r.id AND j.lease_token = r.token
    WHERE j.status = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
), released AS (
    UPDATE learnops_jobs j
    SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                      WHEN locked.started AND j.attempts >= %(max_attempts)s THEN 'failed'
                      ELSE 'queued' END,
        attempts = CASE WHEN locked.started THEN j.attempts ELSE greatest(j.attempts - 1, 0) END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL
                             OR (locked.started AND j.attempts >= %(max_attempts)s) THEN now() END,
        last_error = CASE WHEN locked.started THEN 'released at shutdown while running'
                          ELSE j.last_error END,
        errors = CASE WHEN locked.started THEN jsonb_path_query_array(
                          j.errors || jsonb_build_array(jsonb_build_object(
                              'attempt', j.attempts, 'at', now(), 'worker', j.worker_id,
                              'error', 'released at shutdown while running')),
                          '$[last - 19 to last]')
                      ELSE j.errors END,
        run_after = now(),
        lease_token = NULL,
        lease_expires_at = NULL,
        slot = NULL
    FROM locked
    WHERE j.id = locked.id
    RETURNING j.id, j.status
)
SELECT id, status, pg_notify('learnops_jobs', '') FROM released;

-- name: notify --
-- With a global cap, a finished job frees a slot that idle workers should not wait a poll for.
SELECT pg_notify('learnops_jobs', '');

-- name: enqueue --
-- Times come from the database's clock: a relative delay is added to its now().
-- With a dedupe key, a second enqueue of the same (kind, key) inserts nothing.
INSERT INTO learnops_jobs (kind, payload, priority, run_after, dedupe_key)
VALUES (%(kind)s, %(payload)s::jsonb, %(priority)s,
        coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay_seconds)s)),
        %(dedupe_key)s)
ON CONFLICT (kind, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: enqueue_existing --
SELECT id FROM learnops_jobs WHERE kind = %(kind)s AND dedupe_key = %(dedupe_key)s;

-- name: cancel --
-- A queued job is cancelled at once; a running one is marked, and its outcome, whenever it
-- is written, turns into `cancelled`.
UPDATE learnops_jobs
SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
    cancel_requested_at = coalesce(cancel_requested_at, now())
WHERE id = %(id)s AND status IN ('queued', 'running')
RETURNING status;

-- name: job_status --
SELECT id, kind, status, attempts, priority, run_after, created_at, started_at, finished_at,
       last_error, result, cancel_requested_at IS NOT NULL, dedupe_key
FROM learnops_jobs WHERE id = %(id)s;

-- name: worker_register --
-- The table of live workers: what each handles, until when it counts as alive.
INSERT INTO learnops_workers (worker_id, kinds, concurrency, started_at, seen_at, expires_at)
VALUES (%(worker_id)s, %(kinds)s, %(concurrency)s, now(), now(),
        now() + make_interval(secs => %(ttl_seconds)s))
ON CONFLICT (worker_id) DO UPDATE
SET kinds = EXCLUDED.kinds, concurrency = EXCLUDED.concurrency, seen_at = now(),
    expires_at = EXCLUDED.expires_at;

-- name: worker_unregister --
DELETE FROM learnops_workers WHERE worker_id = %(worker_id)s;

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

-- name: stats_unhandled --
-- Queued kinds that no live worker handles: such jobs would wait forever.
SELECT j.kind, count(*) FROM learnops_jobs j
WHERE j.status = 'queued' AND NOT EXISTS (
    SELECT 1 FROM learnops_workers w WHERE w.expires_at > now() AND j.kind = ANY (w.kinds)
)
GROUP BY j.kind ORDER BY j.kind;

-- name: stats_workers --
SELECT worker_id, kinds, concurrency, seen_at FROM learnops_workers
WHERE expires_at > now() ORDER BY worker_id;

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
-- An entry past its TTL counts as absent even before retention deletes it.
SELECT result FROM learnops_result_cache
WHERE handler = %(handler)s AND backend = %(backend)s AND model = %(model)s
  AND input_hash = %(input_hash)s
  AND (%(ttl_seconds)s = 0 OR created_at > now() - make_interval(secs => %(ttl_seconds)s));

-- name: cache_put --
INSERT INTO learnops_result_cache (handler, backend, model, input_hash, result)
VALUES (%(handler)s, %(backend)s, %(model)s, %(input_hash)s, %(result)s::jsonb)
ON CONFLICT (handler, backend, model, input_hash) DO UPDATE
SET result = EXCLUDED.result, created_at = now();

-- name: retention_lock --
-- One pruning worker at a time, whichever gets there first; the others skip the round.
SELECT pg_try_advisory_lock(hashtextextended('learnops_worker.retention', 0));

-- name: retention_unlock --
SELECT pg_advisory_unlock(hashtextextended('learnops_worker.retention', 0));

-- name: prune_jobs --
-- Oldest finished jobs of one status first, in small batches that skip locked rows, so a
-- prune never waits for (or holds up) a claim.
WITH doomed AS (
    SELECT id FROM learnops_jobs
    WHERE status = %(status)s AND finished_at < now() - make_interval(secs => %(age_seconds)s)
    ORDER BY finished_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM learnops_jobs j USING doomed d WHERE j.id = d.id;

-- name: prune_cache --
WITH doomed AS (
    SELECT handler, backend, model, input_hash FROM learnops_result_cache
    WHERE created_at < now() - make_interval(secs => %(age_seconds)s)
    ORDER BY created_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM learnops_result_cache c USING doomed d
WHERE (c.handler, c.backend, c.model, c.input_hash) = (d.handler, d.backend, d.model, d.input_hash);

-- name: prune_workers --
DELETE FROM learnops_workers WHERE expires_at < now() - interval '1 hour';

-- name: migrations_lock --
-- Session level and tried, not awaited: a waiting statement would hold a snapshot that a
-- concurrent CREATE INDEX CONCURRENTLY of the other `migrate` has to wait for.
SELECT pg_try_advisory_lock(hashtextextended('learnops_worker.migrate', 0));

-- name: migrations_unlock --
SELECT pg_advisory_unlock(hashtextextended('learnops_worker.migrate', 0));

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
-- The newest migration's table: a database migrated by an older version counts as missing.
SELECT to_regclass('learnops_workers') IS NOT NULL;
