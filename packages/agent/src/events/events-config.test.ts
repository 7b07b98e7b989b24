import { join } from 'node:path';
import { rootFileForConfig } from '../test-support/root-file.js';
import { describe, expect, it } from 'vitest';
import { ConfigError, resolveAgentConfig } from '../config/agent-config.js';

const minimal = { deviceId: 'gate-1', dataDir: 'data', trust: { rootFile: rootFileForConfig() }, ffmpegPath: '/usr/bin/ffmpeg' };

describe('events and http config', () => {
  it('has defaults for every key; snapshots go under the data folder', async () => {
    const c = await resolveAgentConfig(minimal, '/srv/perch');
    expect(c.events).toEqual({
      enabled: true,
      minConfidence: 0.6,
      debounceFrames: 3,
      appearMs: 0,
      disappearMs: 3000,
      updateIntervalMs: 30_000,
      ignoreLabels: [],
      snapshots: { enabled: true, dir: join('/srv/perch', 'data', 'snapshots'), maxFiles: 500, quality: 80 },
    });
    expect(c.http).toEqual({ enabled: true, host: '127.0.0.1', port: 9180 });
  });

  it('takes partial sections, and resolves a relative snapshot folder against the config file', async () => {
    const c = await resolveAgentConfig({ ...minimal, events: { ignoreLabels: ['empty'], snapshots: { dir: 'snaps', maxFiles: 20 } }, http: { port: 0 } }, '/srv/perch');
    expect(c.events).toMatchObject({ minConfidence: 0.6, ignoreLabels: ['empty'], snapshots: { dir: '/srv/perch/snaps', maxFiles: 20, quality: 80 } });
    expect(c.http).toEqual({ enabled: true, host: '127.0.0.1', port: 0 });
  });

  it('lists every bad value with its path', async () => {
    const bad = { ...minimal, events: { minConfidence: 1.5, debounceFrames: 0, snapshots: { quality: 0, colour: true } }, http: { port: 70000 } };
    const err = await resolveAgentConfig(bad, '/srv/perch').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).problems.map((p) => p.split(':')[0]);
    expect(paths.sort()).toEqual(['events.debounceFrames', 'events.minConfidence', 'events.snapshots', 'events.snapshots.quality', 'http.port']);
  });
});
