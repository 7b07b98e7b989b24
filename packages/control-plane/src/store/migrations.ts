/**
 * Versioned schema migrations, applied in order inside one transaction each.
 * Append only: a released migration is never edited, a change is a new entry.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Migration 11's SQL for one resolution's rollup table: the same columns plus through_rowid, keyed by bucket first. */
function rollupsByBucket(resolution: 'minute' | 'hour'): string {
  const t = `telemetry_rollups_${resolution}`;
  return `
      CREATE TABLE ${t}_by_bucket (
        bucket_start      INTEGER NOT NULL,
        device_id         TEXT NOT NULL,
        windows           INTEGER NOT NULL,
        frames_received   INTEGER NOT NULL,
        frames_inferred   INTEGER NOT NULL,
        frames_dropped    INTEGER NOT NULL,
        inference_errors  INTEGER NOT NULL,
        class_counts_json TEXT NOT NULL,
        latency_json      TEXT NOT NULL,
        shadow_compared   INTEGER NOT NULL,
        shadow_agreed     INTEGER NOT NULL,
        through_rowid     INTEGER NOT NULL,
        PRIMARY KEY (bucket_start, device_id)
      ) WITHOUT ROWID;
      INSERT INTO ${t}_by_bucket
        SELECT bucket_start, device_id, windows, frames_received, frames_inferred, frames_dropped, inference_errors,
               class_counts_json, latency_json, shadow_compared, shadow_agreed, 0
        FROM ${t} ORDER BY bucket_start, device_id;
      DROP TABLE ${t};
      ALTER TABLE ${t}_by_bucket RENAME TO ${t};
      CREATE INDEX ${t}_device ON ${t} (device_id, bucket_start);
`;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'registry, devices, desired states, telemetry, events',
    sql: `
      CREATE TABLE model_versions (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        version       TEXT NOT NULL,
        sha256        TEXT NOT NULL,
        length        INTEGER NOT NULL,
        metadata_json TEXT NOT NULL,
        target_json   TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        UNIQUE (name, version)
      );
      CREATE INDEX model_versions_sha256 ON model_versions (sha256);

      CREATE TABLE devices (
        id             TEXT PRIMARY KEY,
        status         TEXT NOT NULL DEFAULT 'unknown',
        status_reason  TEXT,
        agent_version  TEXT,
        first_seen     INTEGER,
        last_seen      INTEGER,
        reported_json  TEXT,
        created_at     INTEGER NOT NULL
      );

      CREATE TABLE desired_states (
        device_id        TEXT PRIMARY KEY REFERENCES devices (id),
        generation       INTEGER NOT NULL,
        model_version_id INTEGER REFERENCES model_versions (id),
        envelope_json    TEXT NOT NULL,
        updated_at       INTEGER NOT NULL
      );

      CREATE TABLE telemetry_windows (
        device_id     TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        window_start  INTEGER NOT NULL,
        window_end    INTEGER NOT NULL,
        model_sha256  TEXT,
        frames_inferred INTEGER NOT NULL,
        payload_json  TEXT NOT NULL,
        received_at   INTEGER NOT NULL,
        PRIMARY KEY (device_id, seq)
      ) WITHOUT ROWID;
      CREATE INDEX telemetry_windows_end ON telemetry_windows (device_id, window_end);

      CREATE TABLE telemetry_class_counts (
        device_id  TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        camera_id  TEXT NOT NULL,
        label      TEXT NOT NULL,
        count      INTEGER NOT NULL,
        window_end INTEGER NOT NULL,
        PRIMARY KEY (device_id, seq, camera_id, label)
      ) WITHOUT ROWID;

      CREATE TABLE detection_events (
        device_id  TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        event_id   TEXT NOT NULL,
        kind       TEXT NOT NULL,
        camera_id  TEXT NOT NULL,
        label      TEXT NOT NULL,
        at         INTEGER NOT NULL,
        payload_json TEXT NOT NULL,
        PRIMARY KEY (device_id, seq)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    name: 'model targets as TUF targets.json lists them, no longer each in its own envelope',
    sql: `
      UPDATE model_versions
        SET target_json = json_remove(json_extract(target_json, '$.signed'), '$._type', '$.spec_version', '$.version', '$.expires')
        WHERE json_extract(target_json, '$.signed') IS NOT NULL;
    `,
  },
  {
    version: 3,
    name: 'fleet identity: per-device credentials, claim tokens, revocation, tags and groups',
    sql: `
      -- Secrets are 256-bit random values the control plane generates, so a SHA-256 of them
      -- cannot be brute-forced and verifying costs microseconds (a reconnect storm of 10,000
      -- devices would spend minutes in a password KDF).
      CREATE TABLE device_credentials (
        device_id      TEXT PRIMARY KEY REFERENCES devices (id),
        secret_sha256  TEXT NOT NULL,
        issued_at      INTEGER NOT NULL,
        claim_token_id TEXT,
        -- first connect with these credentials: claimed ones never used may be claimed again,
        -- so a box that lost the answer to its claim (power cut) is not locked out
        used_at        INTEGER
      ) WITHOUT ROWID;
      ALTER TABLE devices ADD COLUMN revoked_at INTEGER;
      ALTER TABLE devices ADD COLUMN revoked_reason TEXT;

      CREATE TABLE claim_tokens (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        max_uses     INTEGER,
        uses         INTEGER NOT NULL DEFAULT 0,
        expires_at   INTEGER,
        tags_json    TEXT NOT NULL DEFAULT '[]',
        groups_json  TEXT NOT NULL DEFAULT '[]',
        created_at   INTEGER NOT NULL,
        revoked_at   INTEGER
      );

      CREATE TABLE device_tags (
        device_id TEXT NOT NULL REFERENCES devices (id),
        tag       TEXT NOT NULL,
        PRIMARY KEY (device_id, tag)
      ) WITHOUT ROWID;
      CREATE INDEX device_tags_tag ON device_tags (tag, device_id);

      CREATE TABLE device_groups (
        device_id  TEXT NOT NULL REFERENCES devices (id),
        group_name TEXT NOT NULL,
        PRIMARY KEY (device_id, group_name)
      ) WITHOUT ROWID;
      CREATE INDEX device_groups_group ON device_groups (group_name, device_id);
    `,
  },
  {
    version: 4,
    name: 'operator access: API tokens with roles, audit log',
    sql: `
      -- Token secrets are 256-bit random values, so their SHA-256 is all that is kept.
      CREATE TABLE api_tokens (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        secret_sha256 TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        created_by    TEXT NOT NULL,
        last_used_at  INTEGER,
        revoked_at    INTEGER
      );
      CREATE INDEX api_tokens_created ON api_tokens (created_at, id);

      -- Append only; request bodies are kept as a redacted summary, never raw.
      CREATE TABLE audit_log (
        id             INTEGER PRIMARY KEY,
        at             INTEGER NOT NULL,
        actor_kind     TEXT NOT NULL,
        actor_id       TEXT,
        actor_name     TEXT NOT NULL,
        action         TEXT NOT NULL,
        path           TEXT NOT NULL,
        target_json    TEXT NOT NULL,
        status         INTEGER,
        outcome        TEXT NOT NULL,
        remote_address TEXT,
        summary_json   TEXT
      );
      CREATE INDEX audit_log_at ON audit_log (at);
      CREATE INDEX audit_log_actor_id ON audit_log (actor_id, id);
      CREATE INDEX audit_log_actor_name ON audit_log (actor_name, id);
    `,
  },
  {
    version: 5,
    name: 'telemetry at fleet scale: sequence gaps, minute and hour rollups, retention indexes',
    sql: `
      -- The highest seq stored per device; with the open gaps below it, this keeps ingest
      -- idempotent even after retention has deleted the raw windows.
      CREATE TABLE telemetry_sequences (
        device_id   TEXT PRIMARY KEY,
        highest_seq INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- Missing seq ranges [first_seq, last_seq]; a window that arrives late splits or removes its range.
      CREATE TABLE telemetry_gaps (
        device_id   TEXT NOT NULL,
        first_seq   INTEGER NOT NULL,
        last_seq    INTEGER NOT NULL,
        detected_at INTEGER NOT NULL,
        PRIMARY KEY (device_id, first_seq)
      ) WITHOUT ROWID;
      CREATE INDEX telemetry_gaps_detected ON telemetry_gaps (detected_at);

      -- Windows are counted in the bucket their windowStart falls in. Class counts and latency
      -- bins are JSON merged by the control plane's SQL functions (telemetry-rollups.ts).
      CREATE TABLE telemetry_rollups_minute (
        device_id         TEXT NOT NULL,
        bucket_start      INTEGER NOT NULL,
        windows           INTEGER NOT NULL,
        frames_received   INTEGER NOT NULL,
        frames_inferred   INTEGER NOT NULL,
        frames_dropped    INTEGER NOT NULL,
        inference_errors  INTEGER NOT NULL,
        class_counts_json TEXT NOT NULL,
        latency_json      TEXT NOT NULL,
        PRIMARY KEY (device_id, bucket_start)
      ) WITHOUT ROWID;
      CREATE INDEX telemetry_rollups_minute_bucket ON telemetry_rollups_minute (bucket_start);

      CREATE TABLE telemetry_rollups_hour (
        device_id         TEXT NOT NULL,
        bucket_start      INTEGER NOT NULL,
        windows           INTEGER NOT NULL,
        frames_received   INTEGER NOT NULL,
        frames_inferred   INTEGER NOT NULL,
        frames_dropped    INTEGER NOT NULL,
        inference_errors  INTEGER NOT NULL,
        class_counts_json TEXT NOT NULL,
        latency_json      TEXT NOT NULL,
        PRIMARY KEY (device_id, bucket_start)
      ) WITHOUT ROWID;
      CREATE INDEX telemetry_rollups_hour_bucket ON telemetry_rollups_hour (bucket_start);

      -- Retention deletes oldest first in bounded batches: by the control plane's clock for
      -- raw windows, by the device's for events.
      CREATE INDEX telemetry_windows_received ON telemetry_windows (received_at);
      CREATE INDEX detection_events_at ON detection_events (at);

      -- Windows stored before this version: their sequences and gaps, so they are not reported missing.
      INSERT INTO telemetry_sequences (device_id, highest_seq, updated_at)
        SELECT device_id, MAX(seq), MAX(received_at) FROM telemetry_windows GROUP BY device_id;
      INSERT INTO telemetry_gaps (device_id, first_seq, last_seq, detected_at)
        SELECT device_id, prev + 1, seq - 1, received_at FROM (
          SELECT device_id, seq, received_at, LAG(seq, 1, -1) OVER (PARTITION BY device_id ORDER BY seq) AS prev
          FROM telemetry_windows
        ) WHERE seq > prev + 1;
    `,
  },
  {
    version: 6,
    name: 'staged rollouts: rollouts, per-device assignments, events, gate evaluations',
    sql: `
      CREATE TABLE rollouts (
        id               TEXT PRIMARY KEY,
        name             TEXT,
        spec_json        TEXT NOT NULL,
        model_version_id INTEGER NOT NULL REFERENCES model_versions (id),
        state            TEXT NOT NULL CHECK (state IN ('draft', 'running', 'paused', 'rolling-back', 'rolled-back', 'aborted', 'completed')),
        stage_index      INTEGER NOT NULL,
        phase            TEXT NOT NULL CHECK (phase IN ('shadow', 'replace')),
        -- by the control plane's clock: soaks go on counting across a restart
        phase_started_at INTEGER,
        reason           TEXT,
        created_by       TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
      );
      CREATE INDEX rollouts_state ON rollouts (state);
      CREATE INDEX rollouts_created ON rollouts (created_at, id);

      -- A device once in a rollout stays in it; previous_json is its desired state before the
      -- rollout, so a rollback restores exactly that; baseline_json its previous model's
      -- telemetry before it joined, what latency and skipped frames are judged against.
      CREATE TABLE rollout_devices (
        rollout_id    TEXT NOT NULL REFERENCES rollouts (id),
        device_id     TEXT NOT NULL,
        stage_index   INTEGER NOT NULL,
        hash          REAL NOT NULL,
        assigned_at   INTEGER NOT NULL,
        previous_json TEXT NOT NULL,
        baseline_json TEXT,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'shadow', 'replaced', 'restored')),
        generation    INTEGER,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (rollout_id, device_id)
      ) WITHOUT ROWID;
      CREATE INDEX rollout_devices_device ON rollout_devices (device_id);

      -- Every state change, in order: the rollout's history, what the events topic and webhooks carry.
      CREATE TABLE rollout_events (
        id          INTEGER PRIMARY KEY,
        rollout_id  TEXT NOT NULL REFERENCES rollouts (id),
        at          INTEGER NOT NULL,
        type        TEXT NOT NULL,
        state       TEXT NOT NULL,
        stage_index INTEGER NOT NULL,
        phase       TEXT NOT NULL,
        reason      TEXT,
        actor       TEXT
      );
      CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id, id);

      CREATE TABLE rollout_gate_evaluations (
        id          INTEGER PRIMARY KEY,
        rollout_id  TEXT NOT NULL REFERENCES rollouts (id),
        stage_index INTEGER NOT NULL,
        phase       TEXT NOT NULL,
        at          INTEGER NOT NULL,
        gate        TEXT NOT NULL,
        value       REAL,
        threshold   REAL,
        verdict     TEXT NOT NULL CHECK (verdict IN ('pass', 'fail', 'wait', 'skip')),
        detail_json TEXT
      );
      CREATE INDEX rollout_gate_evaluations_rollout ON rollout_gate_evaluations (rollout_id, stage_index, id);
    `,
  },
  {
    version: 7,
    name: 'rollout webhook outbox; devices taken out of a rollout by hand',
    sql: `
      -- Webhook deliveries not yet acknowledged with a 2xx, so a restart loses none. Sent in id
      -- order per webhook (its URL); deleted on a 2xx or when given up.
      CREATE TABLE rollout_webhook_outbox (
        id              INTEGER PRIMARY KEY,
        webhook_url     TEXT NOT NULL,
        delivery_id     TEXT NOT NULL,
        event_type      TEXT NOT NULL,
        body            TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        UNIQUE (webhook_url, delivery_id)
      );
      CREATE INDEX rollout_webhook_outbox_webhook ON rollout_webhook_outbox (webhook_url, id);

      -- A device whose desired model an operator set by hand (forced past an active rollout, or
      -- after it finished): the rollout no longer issues it anything, rollback included, nor judges it.
      ALTER TABLE rollout_devices ADD COLUMN released_at INTEGER;
      ALTER TABLE rollout_devices ADD COLUMN released_by TEXT;
    `,
  },
  {
    version: 8,
    name: 'class counts only in the windows and the rollups',
    sql: `
      -- Three B-tree inserts a window on pages of the device's own, for a query the windows'
      -- JSON answers (telemetry-store.ts classTotals) and the rollups already sum.
      DROP TABLE telemetry_class_counts;
    `,
  },
  {
    version: 9,
    name: 'raw telemetry windows in arrival order',
    sql: `
      -- Keyed by (device, seq) itself, each window's whole row went onto a page of its device's:
      -- a batch of windows from N devices rewrote N pages of payload. In a rowid table the rows
      -- are appended in arrival order and only the small (device, seq) index entries are spread
      -- out: the ingest benchmark wrote 3.9 KiB of WAL a window instead of 13.8, at twice the rate.
      CREATE TABLE telemetry_windows_by_arrival (
        device_id       TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        window_start    INTEGER NOT NULL,
        window_end      INTEGER NOT NULL,
        model_sha256    TEXT,
        frames_inferred INTEGER NOT NULL,
        payload_json    TEXT NOT NULL,
        received_at     INTEGER NOT NULL
      );
      INSERT INTO telemetry_windows_by_arrival
        SELECT device_id, seq, window_start, window_end, model_sha256, frames_inferred, payload_json, received_at
        FROM telemetry_windows ORDER BY received_at, device_id, seq;
      DROP TABLE telemetry_windows;
      ALTER TABLE telemetry_windows_by_arrival RENAME TO telemetry_windows;
      CREATE UNIQUE INDEX telemetry_windows_key ON telemetry_windows (device_id, seq);
      CREATE INDEX telemetry_windows_end ON telemetry_windows (device_id, window_end);
      CREATE INDEX telemetry_windows_received ON telemetry_windows (received_at);
    `,
  },
  {
    version: 10,
    name: 'shadow agreement in the rollups',
    sql: `
      -- Champion against challenger per minute and hour: sampled frames both answered, and those
      -- whose top-1 labels agreed (0 where no challenger ran, and for buckets before this version).
      ALTER TABLE telemetry_rollups_minute ADD COLUMN shadow_compared INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE telemetry_rollups_minute ADD COLUMN shadow_agreed INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE telemetry_rollups_hour ADD COLUMN shadow_compared INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE telemetry_rollups_hour ADD COLUMN shadow_agreed INTEGER NOT NULL DEFAULT 0;
    `,
  },
{
    version: 11,
    name: 'rollups, sequences and last seen written behind the windows',
    sql: `
      -- The ingest keeps rollups, highest seqs and last seen in memory and writes them every few
      -- seconds (ingest/deferred-telemetry-state.ts). Keyed by bucket first, a bucket's rows of the
      -- whole fleet lie together, so such a write dirties a few hundred pages, not one per device.
      -- through_rowid: the newest window (telemetry_windows rowid) a row counts, so rebuilding from
      -- the windows after a crash adds each window once.
${rollupsByBucket('minute')}${rollupsByBucket('hour')}
      -- Every window with a rowid up to this one is counted in the rollups, sequences and last seen.
      CREATE TABLE telemetry_state_watermark (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        through_rowid INTEGER NOT NULL
      );
      INSERT INTO telemetry_state_watermark (id, through_rowid) SELECT 1, COALESCE(MAX(rowid), 0) FROM telemetry_windows;
    `,
  },
];
