-- 0002: cancellation, idempotent enqueue, kind and payload checks, live workers, retention.
-- Metadata only, so the brief ACCESS EXCLUSIVE lock of ALTER TABLE never rewrites or scans
-- the table: new columns are nullable without defaults, new checks are NOT VALID (they hold
-- for every new row at once and are validated by 0003 without blocking writes).

-- Waits at most this long for the table lock, instead of queueing every claim behind it.
SET LOCAL lock_timeout = '10s';

CREATE FUNCTION learnops_payload_ok(doc jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT octet_length(doc::text) <= 262144
       AND NOT jsonb_path_exists(doc, 'strict $.**{32} ? (@.type() == "object" || @.type() == "array")')
$$;

ALTER TABLE learnops_jobs
    ADD COLUMN dedupe_key text,
    ADD COLUMN cancel_requested_at timestamptz,
    DROP CONSTRAINT learnops_jobs_status_check,
    ADD CONSTRAINT learnops_jobs_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')) NOT VALID,
    ADD CONSTRAINT learnops_jobs_kind_check CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,63}$') NOT VALID,
    ADD CONSTRAINT learnops_jobs_payload_check CHECK (learnops_payload_ok(payload)) NOT VALID,
    ADD CONSTRAINT learnops_jobs_dedupe_key_check CHECK (length(dedupe_key) <= 200) NOT VALID;

CREATE TABLE learnops_workers (
    worker_id   text PRIMARY KEY,
    kinds       text[] NOT NULL,
    concurrency integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
