#!/usr/bin/env node
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import pretty from 'pino-pretty';
import { stringify } from 'yaml';
import { loadControlPlaneConfig } from '../config/control-plane-config.js';
import { ControlPlane } from '../control-plane.js';
import { buildDemoModel, DEMO_MODEL_NAME, DEMO_MODEL_VERSION } from '../training/demo-model.js';
import { makePetParkVideo } from '../training/pet-park/camera-video.js';
import { agentCliPath, demoPaths } from './demo-paths.js';
import { registerIfMissing } from './register-demo-model.js';

/**
 * `npm start`: Perch on its embedded defaults. A control plane (embedded
 * broker, SQLite) and one local agent on a synthetic pet-park camera; the demo
 * model is built, registered, signed, delivered over MQTT and run, and the
 * predictions show in the log and at /api/v1/devices/demo-agent-1/predictions.
 */
const DEVICE_ID = 'demo-agent-1';
const paths = demoPaths();
const prettyOptions = { colorize: process.stdout.isTTY, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,service', singleLine: true };
const log = pino({ name: 'perch-demo', level: process.env.PERCH_LOG_LEVEL ?? 'info' }, pretty(prettyOptions));
const formatAgentLine = pretty.prettyFactory({ ...prettyOptions, colorize: false });

async function main(): Promise<void> {
  mkdirSync(dirname(paths.video), { recursive: true });
  log.info('building the demo model (cached after the first run)');
  const model = await buildDemoModel({ outDir: paths.model });
  if (!existsSync(paths.video)) await makePetParkVideo({ outPath: paths.video, seed: 11, scenes: 9, secondsPerScene: 3, fps: 10 });

  // The demo serves this machine only, unless the environment says otherwise.
  const config = loadControlPlaneConfig({
    overrides: {
      dataDir: paths.controlPlaneData,
      mqtt: { host: process.env.PERCH_MQTT_HOST ?? '127.0.0.1' },
      http: { host: process.env.PERCH_HTTP_HOST ?? '127.0.0.1' },
    },
  });
  const cp = new ControlPlane(config, log.child({ name: 'control-plane' }));
  await cp.start();
  const api = `http://127.0.0.1:${cp.httpPort}/api/v1`;
  // The demo calls its API as an operator would, with the admin token the first start wrote.
  const authorization = `Bearer ${cp.adminToken}`;
  await registerIfMissing(api, cp.adminToken, DEMO_MODEL_NAME, DEMO_MODEL_VERSION, model.modelPath, model.metadataPath, log);
  await fetch(`${api}/devices/${DEVICE_ID}/desired-model`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization },
    body: JSON.stringify({ model: { name: DEMO_MODEL_NAME, version: DEMO_MODEL_VERSION } }),
  });

  writeFileSync(paths.trustedRoot, JSON.stringify(await cp.trustedRoot(), null, 2));
  // The agent claims its own credentials with the site's default claim token, as a box in the field would.
  writeFileSync(paths.claimToken, cp.claimToken, { mode: 0o600 });
  // An agent folder removed beside a kept control plane: the box claims again instead of being refused.
  if (!existsSync(join(paths.agentData, 'secrets', 'mqtt-credentials')) && cp.services.devices.get(DEVICE_ID)) {
    await cp.services.identity.forgetCredentials(DEVICE_ID);
  }
  writeFileSync(
    paths.agentConfig,
    stringify({
      deviceId: DEVICE_ID,
      dataDir: paths.agentData,
      broker: { url: `mqtt://127.0.0.1:${cp.mqttPort}`, claimTokenFile: paths.claimToken },
      trust: { rootFile: paths.trustedRoot },
      telemetry: { windowSeconds: 5 },
      // The demo's model is shown running soon; a box in the field keeps the 60 s default.
      deployment: { healthWindowSeconds: 10 },
      cameras: [{ id: 'pet-park', fps: 5, source: { kind: 'file', path: paths.video } }],
    }),
  );
  const agent = spawn(process.execPath, [agentCliPath(), '--config', paths.agentConfig], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  let pending = '';
  agent.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      process.stdout.write(line.startsWith('{') ? formatAgentLine(line) : `${line}\n`);
    }
  });

  const startedAt = Date.now();
  const poll = setInterval(() => {
    fetch(`${api}/devices/${DEVICE_ID}/predictions?since=${startedAt}`, { headers: { authorization } })
      .then((r) => r.json() as Promise<{ framesInferred: number; classCounts: Record<string, number> }>)
      .then((p) => {
        if (p.framesInferred > 0) log.info({ classCounts: p.classCounts, framesInferred: p.framesInferred }, `predictions since start (GET ${api}/devices/${DEVICE_ID}/predictions)`);
      })
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'predictions poll failed'));
  }, 10_000);

  log.info({ api, docs: `http://127.0.0.1:${cp.httpPort}/api/docs`, mqttPort: cp.mqttPort, dataDir: paths.base }, 'Perch is running: Ctrl-C stops it');
  // The path, never the token: logs are no place for secrets.
  log.info({ adminTokenFile: cp.adminTokenFile }, `API calls need the admin token: curl -H "Authorization: Bearer $(cat ${cp.adminTokenFile})" ${api}/devices`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    clearInterval(poll);
    const exited = new Promise<void>((resolve) => agent.once('exit', () => resolve()));
    if (agent.exitCode === null) agent.kill('SIGTERM');
    exited
      .then(() => cp.stop())
      .then(() => process.exit(0))
      .catch(() => process.exit(1));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  agent.once('exit', (code) => {
    if (!stopping) {
      log.error({ code }, 'the agent exited');
      stop();
    }
  });
}

main().catch((err: unknown) => {
  log.fatal({ err }, 'the demo failed to start');
  process.exit(1);
});
