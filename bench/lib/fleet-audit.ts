/**
 * What a control plane's SQLite store holds after a fleet or fuzz run:
 * row counts, the (device, seq) keys of chosen devices, and, on request,
 * every stored telemetry window, event and reported state checked against
 * the contract's schema (and against its own row's keys). Also the own
 * properties of Object.prototype in this process: a payload that polluted
 * the prototype would add some.
 */
import { detectionEventSchema, reportedStateSchema, telemetryWindowSchema } from '@perch/shared';
import type { Database } from 'better-sqlite3';

export interface AuditResult {
  telemetryRows: number;
  telemetryInvalid: number;
  eventRows: number;
  eventsInvalid: number;
  reportedInvalid: number;
  /** `${deviceId}/${seq}` of the telemetry windows and events stored for the devices asked about */
  telemetryKeys: string[];
  eventKeys: string[];
  prototypeKeys: string[];
}

export function auditStore(db: Database, deviceIds: readonly string[], validate: boolean): AuditResult {
  let telemetryInvalid = 0;
  let eventsInvalid = 0;
  let reportedInvalid = 0;
  if (validate) {
    for (const r of db.prepare('SELECT device_id AS d, seq, payload_json AS p FROM telemetry_windows').iterate() as Iterable<{ d: string; seq: number; p: string }>) {
      const w = telemetryWindowSchema.safeParse(JSON.parse(r.p));
      if (!w.success || w.data.deviceId !== r.d || w.data.seq !== r.seq) telemetryInvalid++;
    }
    for (const r of db.prepare('SELECT device_id AS d, seq, payload_json AS p FROM detection_events').iterate() as Iterable<{ d: string; seq: number; p: string }>) {
      const e = detectionEventSchema.safeParse(JSON.parse(r.p));
      if (!e.success || e.data.deviceId !== r.d || e.data.seq !== r.seq) eventsInvalid++;
    }
    for (const r of db.prepare('SELECT id, reported_json AS p FROM devices WHERE reported_json IS NOT NULL').iterate() as Iterable<{ id: string; p: string }>) {
      const s = reportedStateSchema.safeParse(JSON.parse(r.p));
      if (!s.success || s.data.deviceId !== r.id) reportedInvalid++;
    }
  }
  const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
  const keys = (table: 'telemetry_windows' | 'detection_events') => {
    const stmt = db.prepare(`SELECT seq FROM ${table} WHERE device_id = ?`).pluck();
    return deviceIds.flatMap((id) => (stmt.all(id) as number[]).map((seq) => `${id}/${seq}`));
  };
  return {
    telemetryRows: count('SELECT COUNT(*) AS n FROM telemetry_windows'),
    telemetryInvalid,
    eventRows: count('SELECT COUNT(*) AS n FROM detection_events'),
    eventsInvalid,
    reportedInvalid,
    telemetryKeys: keys('telemetry_windows'),
    eventKeys: keys('detection_events'),
    prototypeKeys: Object.getOwnPropertyNames(Object.prototype).sort(),
  };
}
