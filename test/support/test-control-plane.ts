import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlPlane, createLogger, loadControlPlaneConfig, type ControlPlaneConfig, type ControlPlaneConfigInput } from '@perch/control-plane';

export interface TestControlPlane {
  cp: ControlPlane;
  /** its config, with the MQTT port it got, so it can be started again where the devices look for it */
  config: ControlPlaneConfig;
  /** http://127.0.0.1:port/api/v1 */
  api: string;
  /** the control plane's first admin API token, for `Authorization: Bearer` (see bearer() in api-auth.ts) */
  adminToken: string;
  /** the control plane's TUF root, as an agent's trust.rootFile */
  rootFile: string;
  /** the site's default claim token, as an agent's broker.claimTokenFile: the agent claims its own credentials */
  claimTokenFile: string;
}

/** A real control plane on loopback ports with its data in `dir`, and the two files an agent needs to join it. `overrides` adds config (e.g. bandwidth limits). */
export async function startTestControlPlane(dir: string, overrides: ControlPlaneConfigInput = {}): Promise<TestControlPlane> {
  const config = loadControlPlaneConfig({
    env: {},
    overrides: { ...overrides, dataDir: join(dir, 'cp'), mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'warn' } },
  });
  const cp = new ControlPlane(config, createLogger('warn'));
  await cp.start();
  const fixed: ControlPlaneConfig = { ...config, mqtt: { ...config.mqtt, port: cp.mqttPort } };
  const api = `http://127.0.0.1:${cp.httpPort}/api/v1`;
  const rootFile = join(dir, 'root.json');
  writeFileSync(rootFile, await (await fetch(`${api}/trust/root`)).text());
  const claimTokenFile = join(dir, 'claim-token');
  writeFileSync(claimTokenFile, cp.claimToken);
  return { cp, config: fixed, api, adminToken: cp.adminToken, rootFile, claimTokenFile };
}
