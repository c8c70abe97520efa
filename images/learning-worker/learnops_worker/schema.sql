-- The complete worker schema as of the newest migration (reference; `migrate` applies
-- migrations/*.sql, and a test proves both give the same catalog).

-- Size and nesting limits of a payload (models.MAX_PAYLOAD_BYTES, MAX_JSON_DEPTH = 32): no
-- container may sit at nesting level 32 or deeper. The path walk stops at that level.
CREATE FUNCTION learnops_payload_ok(doc jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT octet_length(doc::text) <= 262144
       AND NOT jsonb_path_exists(doc, 'strict $.**{32} ? (@.type() == "object" || @.type() == "array")')
$$;

CREATE TABLE learnops_jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'queued',
    priority         integer NOT NULL DEFAULT 0,
    run_after        timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- fencing token: new on every claim; every later write names it in its WHERE
    lease_token      uuid,
    lease_expires_at timestamptz,
    worker_id        text,
    -- global in-flight slot (WORKER_GLOBAL_MAX_INFLIGHT); unique among running jobs
    slot             integer,
    result           jsonb,
    last_error       text,
    errors           jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    -- enqueue's idempotency key: one job per (kind, key) (learnops_jobs_dedupe_idx)
    dedupe_key       text,
    -- set by cancel on a running job: its outcome becomes `cancelled`
    cancel_requested_at timestamptz,
    CHECK ((status = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT learnops_jobs_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- the pattern of models.KIND_PATTERN: a kind no worker can ever match is refused
    CONSTRAINT learnops_jobs_kind_check CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    -- models.MAX_PAYLOAD_BYTES and MAX_JSON_DEPTH, for jobs inserted by plain SQL too
    CONSTRAINT learnops_jobs_payload_check CHECK (learnops_payload_ok(payload)),
    CONSTRAINT learnops_jobs_dedupe_key_check CHECK (length(dedupe_key) <= 200)
);

-- The claim walks this index in order; only queued rows are in it.
CREATE INDEX learnops_jobs_queued_idx ON learnops_jobs (priority DESC, run_after, id)
    WHERE status = 'queued';
-- Expired-lease recovery looks only at running rows.
CREATE INDEX learnops_jobs_running_idx ON learnops_jobs (lease_expires_at)
    WHERE status = 'running';
-- The global cap: two running jobs can never hold the same slot.
CREATE UNIQUE INDEX learnops_jobs_slot_idx ON learnops_jobs (slot)
    WHERE status = 'running' AND slot IS NOT NULL;
CREATE INDEX learnops_jobs_failed_idx ON learnops_jobs (kind) WHERE status = 'failed';
-- Idempotent enqueue: a double submit with the same key finds the first job.
CREATE UNIQUE INDEX learnops_jobs_dedupe_idx ON learnops_jobs (kind, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
-- Retention deletes the oldest finished jobs of one status first.
CREATE INDEX learnops_jobs_finished_idx ON learnops_jobs (status, finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');

-- Wakes idle workers at once; statement-level so a bulk enqueue sends one notification.
CREATE FUNCTION learnops_jobs_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('learnops_jobs', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER learnops_jobs_notify AFTER INSERT ON learnops_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION learnops_jobs_notify();

-- Provider answers by input: a retried or duplicate submission never pays twice.
CREATE TABLE learnops_result_cache (
    handler     text NOT NULL,
    backend     text NOT NULL,
    model       text NOT NULL,
    input_hash  text NOT NULL,
    result      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (handler, backend, model, input_hash)
);
-- Retention deletes the oldest entries first (WORKER_CACHE_TTL).
CREATE INDEX learnops_result_cache_created_idx ON learnops_result_cache (created_at);

-- Live workers: the kinds each handles, so `stats` and a metric can show kinds nobody runs.
CREATE TABLE learnops_workers (
    worker_id   text PRIMARY KEY,
    kinds       text[] NOT NULL,
    concurrency integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
