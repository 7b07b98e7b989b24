import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlPlane, createLogger, loadControlPlaneConfig } from '@perch/control-plane';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../packages/agent/src/agent.js';
import { resolveAgentConfig } from '../packages/agent/src/config/agent-config.js';
import { CapturedLog } from '../packages/agent/src/test-support/harness.js';
import { TestCertificates } from './support/test-certificates.js';
import { waitUntil } from './support/wait-until.js';

/**
 * The agent over MQTT with TLS (mqtts) to the control plane's embedded
 * broker, whose certificate comes from a private CA: the agent trusts what
 * `broker.caFile` names, and presents `broker.certFile` / `keyFile` when
 * given. Real openssl certificates, a real control plane, in-process agents.
 */
let dir: string;
let certs: TestCertificates;
let cp: ControlPlane;
let rootFile: string;
let tlsUrl: string;
const agents: Agent[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'perch-agent-tls-'));
  certs = new TestCertificates(dir);
  certs.authority('ca');
  certs.authority('other-ca');
  certs.issue('server', 'localhost', 'ca', 'IP:127.0.0.1,DNS:localhost');
  certs.issue('client', 'tls-cert-box', 'ca');
  certs.issue('rogue', 'tls-rogue-box', 'other-ca');
  const config = loadControlPlaneConfig({
    env: {},
    overrides: {
      dataDir: join(dir, 'cp'),
      mqtt: { host: '127.0.0.1', port: 0, tls: { certFile: certs.file('server.pem'), keyFile: certs.file('server.key'), caFile: certs.file('ca.pem'), port: 0 } },
      http: { host: '127.0.0.1', port: 0 },
      log: { level: 'warn' },
    },
  });
  cp = new ControlPlane(config, createLogger('warn'));
  await cp.start();
  tlsUrl = `mqtts://127.0.0.1:${cp.mqttTlsPort ?? 0}`;
  rootFile = join(dir, 'root.json');
  writeFileSync(rootFile, JSON.stringify(await cp.trustedRoot()));
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  await cp?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function startAgent(deviceId: string, tls: Record<string, string>): Promise<Agent> {
  const config = await resolveAgentConfig(
    {
      deviceId,
      dataDir: join(dir, deviceId),
      broker: { url: tlsUrl, claimToken: cp.claimToken, reconnect: { minMs: 50, maxMs: 300 }, ...tls },
      trust: { rootFile },
      cameras: [],
      events: { enabled: false },
      http: { enabled: false },
    },
    dir,
  );
  const agent = new Agent(config, new CapturedLog('info').logger);
  agents.push(agent);
  await agent.start();
  return agent;
}

const online = (deviceId: string) => cp.services.devices.get(deviceId)?.status === 'online';

describe('the agent over mqtts with a private CA', () => {
  it('trusting the CA, claims its credentials over TLS and comes online with them', async () => {
    const agent = await startAgent('tls-box', { caFile: certs.file('ca.pem') });
    await waitUntil(() => online('tls-box'), 'tls-box online', 20_000);
    expect(agent.identity.credentialSource).toBe('claimed');
    expect(agent.identity.problem).toBeNull();
  });

  it('not trusting it, stays away and says why', async () => {
    const agent = await startAgent('tls-doubter', { caFile: certs.file('other-ca.pem') });
    const problem = await waitUntil(() => agent.identity.problem, 'the TLS failure reported', 20_000);
    expect(problem).toMatch(/could not connect as a claimant: .*certificate/i);
    expect(cp.services.devices.get('tls-doubter')).toBeNull();
  });

  it('presents a client certificate when given one: the CA\'s is let in, another CA\'s is refused', async () => {
    const holder = await startAgent('tls-cert-box', { caFile: certs.file('ca.pem'), certFile: certs.file('client.pem'), keyFile: certs.file('client.key') });
    await waitUntil(() => online('tls-cert-box'), 'tls-cert-box online', 20_000);
    expect(holder.identity.credentialSource).toBe('claimed');
    const rogue = await startAgent('tls-rogue-box', { caFile: certs.file('ca.pem'), certFile: certs.file('rogue.pem'), keyFile: certs.file('rogue.key') });
    await waitUntil(() => rogue.identity.problem?.startsWith('claim not answered'), 'the refused handshake reported', 20_000);
    expect(cp.services.devices.get('tls-rogue-box')).toBeNull();
  });
});
