-- learnops: no-transaction
-- 0003: the indexes and validations of 0002, built without blocking claims or enqueues.
-- Each step runs on its own (CREATE INDEX CONCURRENTLY cannot run in a transaction) and is
-- idempotent, so a `migrate` interrupted half-way simply runs again.

-- step: drop_invalid_indexes --
-- A CONCURRENTLY build that was interrupted leaves an invalid index behind; build it anew.
DO $$
DECLARE name text;
BEGIN
    FOR name IN
        SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE NOT i.indisvalid AND c.relname IN ('learnops_jobs_dedupe_idx',
              'learnops_jobs_finished_idx', 'learnops_result_cache_created_idx')
    LOOP
        EXECUTE format('DROP INDEX %I', name);
    END LOOP;
END
$$;

-- step: dedupe_index --
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS learnops_jobs_dedupe_idx
    ON learnops_jobs (kind, dedupe_key) WHERE dedupe_key IS NOT NULL;

-- step: finished_index --
CREATE INDEX CONCURRENTLY IF NOT EXISTS learnops_jobs_finished_idx
    ON learnops_jobs (status, finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');

-- step: cache_created_index --
CREATE INDEX CONCURRENTLY IF NOT EXISTS learnops_result_cache_created_idx
    ON learnops_result_cache (created_at);

-- step: validate --
-- VALIDATE takes only a SHARE UPDATE EXCLUSIVE lock: claims and enqueues go on meanwhile.
-- A check that old rows break (a kind no worker could match, a payload beyond the limits)
-- stays NOT VALID: it still holds for every new row, and `migrate` says which one it left.
DO $$
DECLARE con text;
BEGIN
    FOR con IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'learnops_jobs'::regclass AND NOT convalidated
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE learnops_jobs VALIDATE CONSTRAINT %I', con);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'learnops_jobs: existing rows violate %; it stays NOT VALID', con;
        END;
    END LOOP;
END
$$;
