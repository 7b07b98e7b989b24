import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { createLogger } from '../logger.js';
import { AuditLogStore, type AuditEntryInput } from '../store/audit-log-store.js';
import { createToken, startApiSite } from '../test-support/api-site.js';
import { tempDatabase } from '../test-support/telemetry-windows.js';
import { RetentionJob, type RetentionOptions } from './retention.js';

const DAY = 86_400_000;
const NOW = 1_000 * DAY;
const log = createLogger('silent');

const policy = (over: Partial<RetentionOptions> = {}): RetentionOptions => ({
  rawWindowsDays: 7,
  minuteRollupsDays: 14,
  hourRollupsDays: 400,
  eventsDays: 30,
  auditDays: 30,
  intervalMs: 60_000,
  batchRows: 3,
  ...over,
});

const entry = (at: number, action: string): AuditEntryInput => ({
  at,
  actor: { kind: 'cli', tokenId: null, name: 'cli' },
  action,
  path: '',
  target: {},
  status: null,
  outcome: 'ok',
  remoteAddress: null,
  summary: null,
});

describe('audit log retention', () => {
  let t: ReturnType<typeof tempDatabase>;
  let audit: AuditLogStore;
  const actions = () => t.db.prepare('SELECT action FROM audit_log ORDER BY id').pluck().all();

  beforeEach(() => {
    t = tempDatabase('perch-audit-retention-');
    audit = new AuditLogStore(t.db);
  });
  afterEach(() => t.close());

  it('deletes entries older than auditDays by their time, oldest first, in batches of at most batchRows', async () => {
    // Recorded out of time order (a clock set back): age decides, not id.
    for (const [age, action] of [[400, 'a400'], [31, 'a31'], [1, 'a1'], [90, 'a90'], [30.5, 'a30.5'], [29, 'a29'], [200, 'a200'], [0, 'a0']] as const) {
      audit.record(entry(NOW - age * DAY, action));
    }
    const job = new RetentionJob(t.db, policy(), log);
    const deleted = await job.run(NOW);
    expect(deleted.audit).toBe(5);
    expect(actions()).toEqual(['a1', 'a29', 'a0']);
    // 3 + 2 rows: two audit batches; one each for the (empty) telemetry kinds.
    expect(job.stats.batches).toBe(5 + 2);
    expect(job.stats.deleted.audit).toBe(5);
    expect((await job.run(NOW)).audit).toBe(0);
    expect(job.stats.deleted.audit).toBe(5);
  });

  it('keeps the audit log forever with auditDays null, and apart from the telemetry ages', async () => {
    for (const age of [3000, 500, 10]) audit.record(entry(NOW - age * DAY, `a${age}`));
    const job = new RetentionJob(t.db, policy({ auditDays: null, rawWindowsDays: 1, eventsDays: 1 }), log);
    expect((await job.run(NOW)).audit).toBe(0);
    expect(actions()).toEqual(['a3000', 'a500', 'a10']);
  });

  it('defaults to 365 days, null allowed, zero or negative refused naming the key', () => {
    expect(loadControlPlaneConfig({ env: {} }).telemetry.retention.auditDays).toBe(365);
    expect(loadControlPlaneConfig({ env: {}, overrides: { telemetry: { retention: { auditDays: null } } } }).telemetry.retention.auditDays).toBeNull();
    for (const bad of [0, -1]) {
      expect(() => loadControlPlaneConfig({ env: {}, overrides: { telemetry: { retention: { auditDays: bad } } } })).toThrow(/telemetry\.retention\.auditDays/);
    }
  });
});

describe('audit log retention in a running control plane', () => {
  it('removes old entries from GET /audit and counts them in /metrics', async () => {
    const site = await startApiSite({ telemetry: { retention: { auditDays: 90 } } });
    try {
      await createToken(site, 'old-one', 'viewer');
      await createToken(site, 'new-one', 'viewer');
      // The first creation was a year ago, as far as the audit log knows.
      const aged = site.cp.db
        .prepare("UPDATE audit_log SET at = at - 365 * 86400000 WHERE action = 'POST /api/v1/tokens' AND summary_json LIKE '%old-one%'")
        .run().changes;
      expect(aged).toBe(1);

      const deleted = await site.cp.services.fleet.retention.run();
      expect(deleted.audit).toBe(1);

      const res = await site.call(site.cp.adminToken, 'GET', '/api/v1/audit?action=POST%20/api/v1/tokens');
      const body = (await res.json()) as { entries: { summary: { name?: string } }[] };
      expect(body.entries.map((e) => e.summary.name)).toEqual(['new-one']);

      const metrics = await (await site.call(site.cp.adminToken, 'GET', '/metrics')).text();
      expect(metrics).toMatch(/^perch_cp_retention_deleted_rows_total\{kind="audit"\} 1$/m);
    } finally {
      await site.stop();
    }
  });
});
