-- name: server_version --
-- One line: server_version_num|server_version (psql -At output).
SELECT current_setting('server_version_num') || '|' || current_setting('server_version');

-- name: table_row_counts --
-- Exact row count of every ordinary and partitioned-leaf table, one "schema.table|count" per line.
SELECT format('%I.%I', n.nspname, c.relname) || '|' ||
       (xpath('/row/c/text()',
              query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
                           false, true, '')))[1]::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1;

-- name: create_scratch_database --
-- psql variable :"scratch" names the database (quoted by psql).
CREATE DATABASE :"scratch" TEMPLATE template0;

-- name: drop_scratch_database --
DROP DATABASE IF EXISTS :"scratch" WITH (FORCE);

-- name: system_identifier --
-- The cluster's unique id (pg_controldata's "Database system identifier"); may be refused to a
-- role without the right to call pg_control_system(), which only costs the manifest that fact.
SELECT system_identifier FROM pg_control_system();

-- name: connectable_databases --
-- Every database a backup of "all databases" covers, NUL-separated (psql -0): connectable,
-- not a template, not a scratch database of BACKUP_VERIFY=restore.
SELECT datname FROM pg_database
WHERE datallowconn AND NOT datistemplate AND datname NOT LIKE 'learnops\_verify\_%'
ORDER BY datname;

-- name: can_read_role_passwords --
-- pg_dumpall reads password hashes from pg_authid, which only superusers may read.
SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT');
-- name: database_size --
-- Bytes on disk of the connected database: the estimate the upload's part size is planned for.
SELECT pg_database_size(current_database());

-- name: begin_snapshot --
-- Opens the transaction whose snapshot pg_dump shares (--snapshot), so the row counts taken in it
-- afterwards are exactly those of the dump.
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot();

-- name: user_relation_count --
-- Tables, views, sequences, materialized views and foreign tables outside the system schemas.
SELECT count(*)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
  AND n.nspname NOT LIKE 'pg_temp%';

-- name: database_exists --
-- psql variable :'dbname'.
SELECT count(*) FROM pg_database WHERE datname = :'dbname';

-- name: create_database --
-- psql variable :"dbname" names the database (quoted by psql).
CREATE DATABASE :"dbname" TEMPLATE template0;

-- name: drop_database --
DROP DATABASE IF EXISTS :"dbname" WITH (FORCE);
