import { rootFileForConfig } from '../test-support/root-file.js';
import { describe, expect, it } from 'vitest';
import { ConfigError, resolveAgentConfig } from '../config/agent-config.js';

const base = { deviceId: 'gate-1', dataDir: '/var/lib/perch', trust: { rootFile: rootFileForConfig() }, ffmpegPath: '/usr/bin/ffmpeg' };

describe('outbox config', () => {
  it('has a default for every key', async () => {
    const cfg = await resolveAgentConfig(base, '/etc/perch');
    expect(cfg.outbox).toEqual({ maxBytes: 64 * 1024 * 1024, dropPolicy: 'drop-oldest', inFlight: 32, flushTimeoutMs: 5000 });
    const some = await resolveAgentConfig({ ...base, outbox: { maxRecords: 1000, dropPolicy: 'drop-newest' } }, '/etc/perch');
    expect(some.outbox).toMatchObject({ maxBytes: 64 * 1024 * 1024, maxRecords: 1000, dropPolicy: 'drop-newest' });
  });

  it('names each bad key at its path', async () => {
    const err = await resolveAgentConfig(
      { ...base, outbox: { maxBytes: 10, maxRecords: 0, dropPolicy: 'drop-random', inFlight: 0, flushTimeoutMs: 60_000, spare: 1 } },
      '/etc/perch',
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).problems.map((p) => p.slice(0, p.indexOf(':')));
    expect(paths).toEqual(
      expect.arrayContaining(['outbox.maxBytes', 'outbox.maxRecords', 'outbox.dropPolicy', 'outbox.inFlight', 'outbox.flushTimeoutMs', 'outbox']),
    );
    expect((err as ConfigError).problems.find((p) => p.startsWith('outbox.dropPolicy'))).toMatch(/drop-oldest.*drop-newest/);
  });
});
