-- The named queries of the PostgreSQL store (jobwatchd/store/postgresql.py).
--
-- Each query starts with a "-- name --" line, then comment lines saying what
-- it does. Times: registered_at, updated_at and recorded_at are the caller's
-- unix seconds (double precision, as in SQLite); everything about leases is
-- on the database's clock (now()), so instances need no synchronised clocks.

-- lock_migrations --
-- One instance migrates at a time; the others wait here, then find nothing to do.
SELECT pg_advisory_lock($1);

-- unlock_migrations --
SELECT pg_advisory_unlock($1);

-- schema_version_exists --
-- Asked first, so that a role without CREATE can start on a migrated database.
SELECT to_regclass('schema_version') IS NOT NULL;

-- create_schema_version --
-- One row per applied migration.
CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- schema_version --
SELECT coalesce(max(version), 0) FROM schema_version;

-- record_migration --
INSERT INTO schema_version (version) VALUES ($1);

-- get_job --
SELECT job_id, project_id, account, service, status, registered_at, updated_at, version,
       labels::text AS labels, doc::text AS doc
FROM jobs
WHERE job_id = $1;

-- get_jobs --
-- Jobs by id (the ones a registration batch did not create).
SELECT job_id, project_id, account, service, status, registered_at, updated_at, version,
       labels::text AS labels, doc::text AS doc
FROM jobs
WHERE job_id = ANY($1::text[]);

-- insert_jobs --
-- New jobs: unleased and due now. Sorted by id so that two overlapping batches
-- wait for each other's rows in the same order instead of deadlocking.
INSERT INTO jobs (job_id, project_id, account, status, terminal, registered_at, updated_at,
                  version, labels, doc, next_poll_at, service)
SELECT j.job_id, j.project_id, j.account, $6, false, $7, $7, $8, j.labels::jsonb, j.doc::json,
       now(), j.service
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $9::text[])
     AS j (job_id, project_id, account, labels, doc, service)
ORDER BY j.job_id
ON CONFLICT (job_id) DO NOTHING
RETURNING job_id;

-- list_jobs --
-- After the cursor $1 ('' for the first page), every label of $2 matching.
SELECT job_id, project_id, account, service, status, registered_at, updated_at, version,
       labels::text AS labels, doc::text AS doc
FROM jobs
WHERE job_id > $1 AND labels @> $2::jsonb AND ($4::text IS NULL OR service = $4)
ORDER BY job_id
LIMIT $3;

-- list_jobs_by_status --
SELECT job_id, project_id, account, service, status, registered_at, updated_at, version,
       labels::text AS labels, doc::text AS doc
FROM jobs
WHERE status = $5 AND job_id > $1 AND labels @> $2::jsonb AND ($4::text IS NULL OR service = $4)
ORDER BY job_id
LIMIT $3;

-- delete_job --
DELETE FROM jobs WHERE job_id = $1;

-- active_jobs_page --
SELECT job_id, project_id, account, service, status, registered_at, updated_at, version,
       labels::text AS labels, doc::text AS doc
FROM jobs
WHERE NOT terminal AND job_id > $1
ORDER BY job_id
LIMIT $2;

-- load_duration_models --
SELECT job_type, model::text AS model FROM duration_models;

-- save_duration_models --
INSERT INTO duration_models (job_type, model, updated_at)
SELECT m.job_type, m.model::jsonb, now()
FROM unnest($1::text[], $2::text[]) AS m (job_type, model)
ORDER BY m.job_type
ON CONFLICT (job_type) DO UPDATE SET model = excluded.model, updated_at = excluded.updated_at;

-- record_job --
-- The conditional write of a job without events: only from the version it was
-- computed from, and only by the lease holder when the job is leased ($7 is
-- this instance). A job that ends gives its lease up.
UPDATE jobs
SET status = $3,
    terminal = $4,
    updated_at = $5,
    version = $2 + 1,
    doc = $6::json,
    lease_owner = CASE WHEN $4 THEN NULL ELSE lease_owner END,
    lease_until = CASE WHEN $4 THEN NULL ELSE lease_until END,
    next_poll_at = CASE WHEN $4 THEN NULL ELSE next_poll_at END
WHERE job_id = $1 AND version = $2 AND (lease_owner IS NULL OR lease_owner = $7)
RETURNING job_id;

-- record_job_with_events --
-- The same write, then its events appended in order and announced, as one
-- statement (one transaction). Each step reads the previous one's rows, which
-- orders them: no row updated, no lock and no event; the advisory lock $8
-- (see "Event order = commit order" in postgresql.py) is taken before any seq
-- is drawn and held to the commit, never across a round trip to the client.
-- NOTIFY payloads repeated in a transaction are delivered once.
WITH updated AS (
    UPDATE jobs
    SET status = $3,
        terminal = $4,
        updated_at = $5,
        version = $2 + 1,
        doc = $6::json,
        lease_owner = CASE WHEN $4 THEN NULL ELSE lease_owner END,
        lease_until = CASE WHEN $4 THEN NULL ELSE lease_until END,
        next_poll_at = CASE WHEN $4 THEN NULL ELSE next_poll_at END
    WHERE job_id = $1 AND version = $2 AND (lease_owner IS NULL OR lease_owner = $7)
    RETURNING job_id
),
serialised AS (
    SELECT pg_advisory_xact_lock($8) FROM updated
),
appended AS (
    INSERT INTO events (event_id, job_id, type, payload, recorded_at)
    SELECT e.event_id, e.job_id, e.type, e.payload, $5
    FROM serialised,
         unnest($9::text[], $10::text[], $11::text[], $12::bytea[]) WITH ORDINALITY
         AS e (event_id, job_id, type, payload, n)
    ORDER BY e.n
    RETURNING seq, event_id
)
SELECT seq, event_id, pg_notify('jobwatchd_events', (max(seq) OVER ())::text)
FROM appended;

-- events_after --
SELECT seq, event_id, job_id, type, payload FROM events WHERE seq > $1 ORDER BY seq LIMIT $2;

-- last_seq --
SELECT coalesce(max(seq), 0) FROM events;

-- recorded_at_after --
SELECT recorded_at FROM events WHERE seq > $1 ORDER BY seq LIMIT 1;

-- get_position --
SELECT seq FROM sink_positions WHERE sink = $1;

-- set_position --
-- Never backwards.
INSERT INTO sink_positions (sink, seq, updated_at) VALUES ($1, $2, now())
ON CONFLICT (sink) DO UPDATE
SET seq = greatest(sink_positions.seq, excluded.seq), updated_at = excluded.updated_at;

-- count_by_status --
SELECT status, count(*) FROM jobs GROUP BY status;

-- purge_jobs --
DELETE FROM jobs WHERE terminal AND updated_at < $1;

-- delivered_position --
-- The lowest position among the sinks $1 (a sink without one is at 0); NULL
-- when $1 is empty.
SELECT min(coalesce(p.seq, 0))
FROM unnest($1::text[]) AS s (sink)
LEFT JOIN sink_positions AS p ON p.sink = s.sink;

-- purge_events --
DELETE FROM events WHERE recorded_at < $1 AND seq <= $2;

-- heartbeat --
INSERT INTO instances (id, last_seen) VALUES ($1, now())
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen;

-- forget_instances --
-- Each process run has its own id, so old ones are dropped after a day.
DELETE FROM instances WHERE last_seen < now() - make_interval(secs => greatest($1, 86400));

-- live_instances --
SELECT count(*) FROM instances WHERE last_seen > now() - make_interval(secs => $1);

-- claim_jobs --
-- Active jobs nobody holds or whose lease ran out, earliest next poll first.
-- SKIP LOCKED: instances claiming at the same moment take disjoint sets
-- without waiting for each other.
WITH claimable AS (
    SELECT job_id
    FROM jobs
    WHERE NOT terminal AND (lease_until IS NULL OR lease_until <= now())
    ORDER BY next_poll_at, job_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET lease_owner = $1, lease_until = now() + make_interval(secs => $3)
FROM claimable
WHERE jobs.job_id = claimable.job_id
RETURNING jobs.job_id, jobs.project_id, jobs.account, jobs.service, jobs.status, jobs.registered_at,
          jobs.updated_at, jobs.version, jobs.labels::text AS labels, jobs.doc::text AS doc,
          jobs.next_poll_at;

-- renew_leases --
-- Rows are locked in id order, so a renewal and a release of the same
-- instance never deadlock.
WITH held AS (
    SELECT job_id
    FROM jobs
    WHERE job_id = ANY($2::text[]) AND lease_owner = $1 AND NOT terminal
    ORDER BY job_id
    FOR UPDATE
)
UPDATE jobs
SET lease_until = now() + make_interval(secs => $3)
FROM held
WHERE jobs.job_id = held.job_id
RETURNING jobs.job_id;

-- release_jobs --
WITH held AS (
    SELECT job_id
    FROM jobs
    WHERE job_id = ANY($2::text[]) AND lease_owner = $1
    ORDER BY job_id
    FOR UPDATE
)
UPDATE jobs
SET lease_owner = NULL, lease_until = NULL, next_poll_at = to_timestamp(r.next_poll_at)
FROM held, unnest($2::text[], $3::float8[]) AS r (job_id, next_poll_at)
WHERE jobs.job_id = held.job_id AND r.job_id = held.job_id;

-- acquire_sink --
-- Take a free or expired sink lease, or renew our own.
INSERT INTO sink_leases (sink, owner, until)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (sink) DO UPDATE
SET owner = excluded.owner, until = excluded.until
WHERE sink_leases.owner = excluded.owner OR sink_leases.until <= now()
RETURNING owner;

-- release_sink --
DELETE FROM sink_leases WHERE sink = $1 AND owner = $2;
