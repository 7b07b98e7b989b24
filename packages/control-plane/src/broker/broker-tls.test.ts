import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceTopic } from '@perch/shared';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadControlPlaneConfig, type ControlPlaneConfigInput } from '../config/control-plane-config.js';
import { brokerTlsProblems } from './broker-tls.js';
import { connectControlPlane, DEVICE_SECRET, startTestBroker, until, type TestBroker } from './test-support/broker-harness.js';

let dir: string;
const file = (name: string) => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** An EC key and a certificate for `cn` signed by `ca` (a name prefix in `dir`), with `san` if given. */
function issue(name: string, cn: string, ca: string, san?: string): void {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  const ext = file(`${name}.ext`);
  writeFileSync(ext, san ? `subjectAltName=${san}\n` : 'basicConstraints=CA:FALSE\n');
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext);
}

function authority(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`);
}

/** Runs a mosquitto client; resolves with its exit code (null if it had to be killed). */
function mosquitto(tool: 'mosquitto_pub' | 'mosquitto_sub', args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    execFile(`/usr/bin/${tool}`, args, { timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'perch-broker-tls-'));
  authority('ca');
  authority('other-ca');
  issue('server', 'localhost', 'ca', 'IP:127.0.0.1,DNS:localhost');
  issue('client', 'dev-cert', 'ca');
  issue('rogue', 'dev-rogue', 'other-ca');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('MQTT over TLS', () => {
  let t: TestBroker;
  let cp: MqttClient;
  const got: [string, string][] = [];

  beforeAll(async () => {
    // On every address, as a site would run it; plain MQTT must then stay on loopback.
    t = await startTestBroker({ host: '0.0.0.0', tls: { certFile: file('server.pem'), keyFile: file('server.key'), port: 0 } });
    cp = await connectControlPlane(t);
    cp.on('message', (topic, payload) => got.push([topic, payload.toString()]));
    await cp.subscribeAsync('perch/v1/devices/+/telemetry', { qos: 1 });
  });

  afterAll(async () => {
    await cp.endAsync();
    await t.stop();
  });

  const tlsUrl = () => `mqtts://127.0.0.1:${t.broker.tlsPort}`;

  it('listens with TLS on its own port and keeps plain MQTT on loopback', () => {
    expect(t.broker.tlsPort).toBeGreaterThan(0);
    expect(t.broker.tlsPort).not.toBe(t.broker.port);
    expect(t.lines.find((l) => l.msg === 'embedded MQTT broker listening')).toMatchObject({ host: '127.0.0.1' });
    expect(t.lines.find((l) => l.msg === 'embedded MQTT broker listening with TLS')).toMatchObject({ host: '0.0.0.0' });
  });

  it('takes a device over mqtts when it trusts the CA, and its messages reach the control plane', async () => {
    const dev = await mqtt.connectAsync(tlsUrl(), { clientId: 'dev-tls', username: 'dev-tls', password: DEVICE_SECRET, ca: readFileSync(file('ca.pem')), reconnectPeriod: 0 });
    try {
      await dev.publishAsync(deviceTopic('dev-tls', 'telemetry'), 'over tls', { qos: 1 });
      await until('the message over TLS', () => got.some(([, text]) => text === 'over tls'));
      expect((dev.stream as unknown as { encrypted?: boolean }).encrypted).toBe(true);
    } finally {
      await dev.endAsync();
    }
  });

  it('refuses plain MQTT on the TLS port, and a client that does not trust the certificate', async () => {
    const plain = mqtt.connect(`mqtt://127.0.0.1:${t.broker.tlsPort}`, { clientId: 'dev-plain', username: 'dev-plain', password: DEVICE_SECRET, reconnectPeriod: 0, connectTimeout: 10_000 });
    const outcome = await new Promise<string>((resolve) => {
      plain.once('connect', () => resolve('connected'));
      plain.once('close', () => resolve('closed'));
    });
    plain.end(true);
    expect(outcome).toBe('closed');

    await expect(mqtt.connectAsync(tlsUrl(), { clientId: 'dev-untrusting', username: 'dev-untrusting', password: DEVICE_SECRET, reconnectPeriod: 0 })).rejects.toThrow(/self.signed|unable to verify|certificate/i);
  });

  it('works with mosquitto_pub --cafile, and mosquitto_pub without TLS gets nowhere', async () => {
    const topic = deviceTopic('dev-mosq', 'telemetry');
    const common = ['-h', '127.0.0.1', '-p', String(t.broker.tlsPort), '-i', 'dev-mosq', '-u', 'dev-mosq', '-P', DEVICE_SECRET, '-t', topic, '-q', '1'];
    const ok = await mosquitto('mosquitto_pub', [...common, '--cafile', file('ca.pem'), '-m', 'from mosquitto_pub']);
    expect(ok).toMatchObject({ code: 0 });
    await until('the mosquitto_pub message', () => got.some(([, text]) => text === 'from mosquitto_pub'));

    const plain = await mosquitto('mosquitto_pub', [...common, '-m', 'in the clear']);
    expect(plain.code).not.toBe(0);
    expect(got.some(([, text]) => text === 'in the clear')).toBe(false);
  });
});

describe('MQTT over TLS with a client CA', () => {
  let t: TestBroker;

  beforeAll(async () => {
    t = await startTestBroker({ tls: { certFile: file('server.pem'), keyFile: file('server.key'), caFile: file('ca.pem'), port: 0 } });
  });

  afterAll(async () => {
    await t.stop();
  });

  function attempt(id: string, cert?: 'client' | 'rogue'): Promise<string> {
    const c = mqtt.connect(`mqtts://127.0.0.1:${t.broker.tlsPort}`, {
      clientId: id,
      username: id,
      password: DEVICE_SECRET,
      ca: readFileSync(file('ca.pem')),
      ...(cert ? { cert: readFileSync(file(`${cert}.pem`)), key: readFileSync(file(`${cert}.key`)) } : {}),
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    return new Promise<string>((resolve) => {
      c.once('connect', () => resolve('connected'));
      c.once('close', () => resolve('closed'));
      c.on('error', () => undefined);
    }).finally(() => c.end(true));
  }

  it('takes a client certificate from the CA, refuses one from another CA, and leaves no certificate to authentication', async () => {
    expect(await attempt('dev-cert', 'client')).toBe('connected');
    expect(await attempt('dev-rogue', 'rogue')).toBe('closed');
    expect(await attempt('dev-nocert')).toBe('connected');
    expect(t.lines.filter((l) => l.msg === 'mqtts connection refused: client certificate does not verify')).toHaveLength(1);
  });
});

describe('TLS configuration', () => {
  const base = { env: {} };

  function load(tls: Record<string, unknown>) {
    return () => loadControlPlaneConfig({ ...base, overrides: { dataDir: join(dir, 'cp'), mqtt: { tls } as ControlPlaneConfigInput['mqtt'] } });
  }

  it('lists every unreadable file with its config path', () => {
    const run = load({ certFile: file('missing-cert.pem'), keyFile: file('missing-key.pem'), caFile: file('missing-ca.pem') });
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(/mqtt\.tls\.certFile: cannot read .*missing-cert\.pem.*; mqtt\.tls\.keyFile: cannot read .*missing-key\.pem.*; mqtt\.tls\.caFile: cannot read .*missing-ca\.pem/);
  });

  it('names a file that is not PEM, and a key that does not go with the certificate', () => {
    writeFileSync(file('garbage.pem'), 'not a certificate\n');
    expect(load({ certFile: file('garbage.pem'), keyFile: file('server.key') })).toThrow(/mqtt\.tls\.certFile: .*garbage\.pem is not a PEM certificate/);
    expect(load({ certFile: file('server.pem'), keyFile: file('garbage.pem') })).toThrow(/mqtt\.tls\.keyFile: .*garbage\.pem is not a PEM private key/);
    expect(load({ certFile: file('server.pem'), keyFile: file('client.key') })).toThrow(/mqtt\.tls: the key in .*client\.key does not go with the certificate in .*server\.pem/);
  });

  it('refuses an expired certificate and unknown keys, and takes good files relative to the config file', () => {
    const inTenDays = Date.now() + 10 * 24 * 3600 * 1000;
    expect(brokerTlsProblems({ certFile: file('server.pem'), keyFile: file('server.key'), port: 0 }, 'mqtt.tls', inTenDays)).toEqual([expect.stringMatching(/^mqtt\.tls\.certFile: the certificate in .* expired on /)]);
    expect(load({ certFile: file('server.pem'), keyFile: file('server.key'), cafile: file('ca.pem') })).toThrow(/mqtt\.tls/);

    const yaml = join(dir, 'cp.yaml');
    writeFileSync(yaml, 'mqtt:\n  tls:\n    certFile: server.pem\n    keyFile: server.key\n');
    const cfg = loadControlPlaneConfig({ file: yaml, env: {} });
    expect(cfg.mqtt.tls).toEqual({ certFile: file('server.pem'), keyFile: file('server.key'), port: 8883 });
    expect(cfg.mqtt.limits.rate?.messagesPerSecond).toBe(1000);
  });

  it('will not start a broker on bad TLS files', async () => {
    await expect(startTestBroker({ tls: { certFile: file('server.pem'), keyFile: file('missing-key.pem'), port: 0 } })).rejects.toThrow(/mqtt\.tls\.keyFile: cannot read/);
  });
});
