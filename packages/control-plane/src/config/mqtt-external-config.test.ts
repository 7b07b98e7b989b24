import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadControlPlaneConfig } from './control-plane-config.js';

/** `mqtt.external`: parsed with its defaults, paths resolved against the config file, every problem named by its path. */
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'perch-external-config-'));
  writeFileSync(join(dir, 'cp.password'), 'a-broker-password\n');
  writeFileSync(join(dir, 'empty.password'), '\n');
  writeFileSync(join(dir, 'not-a-cert.pem'), 'hello\n');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function problems(mqtt: unknown): string {
  try {
    loadControlPlaneConfig({ env: {}, overrides: { dataDir: join(dir, 'cp'), mqtt } as never });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('the config was accepted');
}

describe('mqtt.external', () => {
  it('takes a url and a password file, with the generated username, dynamic security on, not shared; relative paths from the file', () => {
    const file = join(dir, 'control-plane.yaml');
    writeFileSync(file, 'mqtt:\n  external:\n    url: mqtt://broker:1883\n    passwordFile: cp.password\n');
    const cfg = loadControlPlaneConfig({ file, env: {} });
    expect(cfg.mqtt.external).toEqual({ url: 'mqtt://broker:1883', username: 'perch.control-plane', passwordFile: join(dir, 'cp.password'), dynsec: true, shared: false });
  });

  it('lists every problem with its path', () => {
    const message = problems({ external: { url: 'http://broker', clientId: 'x', certFile: 'c.pem' }, tls: { certFile: 'a', keyFile: 'b' } });
    expect(message).toMatch(/mqtt\.external\.url/);
    expect(message).toMatch(/mqtt\.external\.passwordFile/);
    expect(message).toMatch(/mqtt\.external\.clientId/);
    expect(problems({ external: { url: 'mqtt://broker', passwordFile: join(dir, 'cp.password'), certFile: 'c.pem' } })).toMatch(/mqtt\.external\.keyFile: give certFile and keyFile together/);
    expect(problems({ external: { url: 'mqtt://broker', passwordFile: join(dir, 'cp.password') }, tls: { certFile: 'a', keyFile: 'b' } })).toMatch(/mqtt\.tls: .*mqtt\.external/);
  });

  it('names unreadable, empty and non-PEM files', () => {
    const message = problems({ external: { url: 'mqtts://broker', passwordFile: join(dir, 'nope'), caFile: join(dir, 'not-a-cert.pem') } });
    expect(message).toMatch(/mqtt\.external\.passwordFile: cannot read .*nope/);
    expect(message).toMatch(/mqtt\.external\.caFile: .*not-a-cert\.pem is not a readable PEM certificate/);
    expect(problems({ external: { url: 'mqtt://broker', passwordFile: join(dir, 'empty.password') } })).toMatch(/mqtt\.external\.passwordFile: .*is empty/);
  });
});
