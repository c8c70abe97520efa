-- The complete worker schema as of the newest migration (reference; `migrate` applies
-- migrations/*.sql, and a test proves both give the same catalog).

CREATE TABLE learnops_jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
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
    CHECK ((status = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL))
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
