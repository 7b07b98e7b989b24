import type { DeviceStatus, ReportedState } from '@perch/shared';
import { writeTransaction, type Db } from './database.js';

export interface DeviceRecord {
  id: string;
  status: 'unknown' | 'online' | 'offline';
  statusReason: string | null;
  agentVersion: string | null;
  firstSeen: number | null;
  lastSeen: number | null;
  reported: ReportedState | null;
  createdAt: number;
}

interface DeviceRow {
  id: string;
  status: DeviceRecord['status'];
  status_reason: string | null;
  agent_version: string | null;
  first_seen: number | null;
  last_seen: number | null;
  reported_json: string | null;
  created_at: number;
}

function toRecord(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    status: row.status,
    statusReason: row.status_reason,
    agentVersion: row.agent_version,
    firstSeen: row.first_seen,
    lastSeen: row.last_seen,
    reported: row.reported_json ? (JSON.parse(row.reported_json) as ReportedState) : null,
    createdAt: row.created_at,
  };
}

/** Devices as the control plane last heard of them. */
export class DeviceStore {
  private readonly ensureStmt;
  private readonly seenStmt;
  private readonly statusStmt;
  private readonly reportedStmt;
  private readonly getStmt;
  private readonly listStmt;

  constructor(private readonly db: Db) {
    this.ensureStmt = db.prepare('INSERT OR IGNORE INTO devices (id, created_at) VALUES (?, ?)');
    this.seenStmt = db.prepare(
      'UPDATE devices SET last_seen = MAX(COALESCE(last_seen, 0), @at), first_seen = COALESCE(first_seen, @at) WHERE id = @id',
    );
    this.statusStmt = db.prepare(
      'UPDATE devices SET status = @status, status_reason = @reason, agent_version = COALESCE(@agentVersion, agent_version) WHERE id = @id',
    );
    this.reportedStmt = db.prepare('UPDATE devices SET reported_json = @json, agent_version = @agentVersion WHERE id = @id');
    this.getStmt = db.prepare('SELECT * FROM devices WHERE id = ?');
    this.listStmt = db.prepare('SELECT * FROM devices ORDER BY id');
  }

  ensure(id: string, now = Date.now()): void {
    this.ensureStmt.run(id, now);
  }

  markSeen(id: string, at = Date.now()): void {
    this.ensure(id, at);
    this.seenStmt.run({ id, at });
  }

  setStatus(status: DeviceStatus, at = Date.now()): void {
    writeTransaction(this.db, () => {
      this.markSeen(status.deviceId, at);
      this.statusStmt.run({ id: status.deviceId, status: status.state, reason: status.reason ?? null, agentVersion: status.agentVersion ?? null });
    })();
  }

  setReported(state: ReportedState, at = Date.now()): void {
    writeTransaction(this.db, () => {
      this.markSeen(state.deviceId, at);
      this.reportedStmt.run({ id: state.deviceId, json: JSON.stringify(state), agentVersion: state.agentVersion });
    })();
  }

  get(id: string): DeviceRecord | null {
    const row = this.getStmt.get(id) as DeviceRow | undefined;
    return row ? toRecord(row) : null;
  }

  list(): DeviceRecord[] {
    return (this.listStmt.all() as DeviceRow[]).map(toRecord);
  }
}
