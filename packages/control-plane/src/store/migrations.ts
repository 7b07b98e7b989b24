/**
 * Versioned schema migrations, applied in order inside one transaction each.
 * Append only: a released migration is never edited, a change is a new entry.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
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
        claim_token_id TEXT
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
];
