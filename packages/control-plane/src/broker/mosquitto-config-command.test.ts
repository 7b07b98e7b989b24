import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addMosquittoConfigCommand } from './mosquitto-config-command.js';

describe('perch-control-plane mosquitto-config', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'perch-mosquitto-command-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const run = async (args: string[]): Promise<string> => {
    let printed = '';
    const program = new Command('perch-control-plane').exitOverride();
    addMosquittoConfigCommand(program, (t) => {
      printed += t;
    });
    await program.parseAsync(['mosquitto-config', ...args], { from: 'user' });
    return printed;
  };

  it('writes the files for the given listener and prints where, without the password', async () => {
    const out = join(dir, 'plain');
    const printed = JSON.parse(await run(['--out', out, '--host', '127.0.0.1', '--port', '1884'])) as Record<string, unknown>;
    expect(printed).toMatchObject({ confFile: join(out, 'mosquitto.conf'), username: 'perch.control-plane', createdDynsecFile: true });
    expect(printed).not.toHaveProperty('password');
    expect(await readFile(join(out, 'mosquitto.conf'), 'utf8')).toContain('listener 1884 127.0.0.1');
  });

  it('adds TLS, and refuses half of it or a port that is no port', async () => {
    const out = join(dir, 'tls');
    await run(['--out', out, '--port', '8883', '--tls-cert', '/etc/perch/server.crt', '--tls-key', '/etc/perch/server.key']);
    expect(await readFile(join(out, 'mosquitto.conf'), 'utf8')).toContain('listener 8883 0.0.0.0\ncertfile /etc/perch/server.crt\nkeyfile /etc/perch/server.key');
    await expect(run(['--out', out, '--tls-cert', '/etc/perch/server.crt'])).rejects.toThrow(/--tls-cert and --tls-key together/);
    await expect(run(['--out', out, '--port', 'eighty'])).rejects.toThrow(/port/);
  });
});
