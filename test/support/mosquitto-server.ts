import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import mqtt, { type ErrorWithReasonCode, type IClientOptions, type ISubscriptionGrant, type MqttClient } from 'mqtt';
import { writeMosquittoConfig, type WriteMosquittoConfigOptions, type WrittenMosquittoConfig } from '../../packages/control-plane/src/broker/mosquitto-config.js';

export const MOSQUITTO_BIN = '/usr/sbin/mosquitto';

export interface MosquittoServer {
  url: string;
  host: string;
  port: number;
  /** the folder with its config, dynamic security file and persistence */
  dir: string;
  files: WrittenMosquittoConfig;
  /** the control plane's (admin) credentials from the generated config */
  admin: { username: string; password: string };
  /** what the broker logged so far */
  log(): string;
  /** resolves when the process has exited; the folder is removed unless it was given */
  stop(): Promise<void>;
}

async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Retries a TCP connect until the broker accepts one; fails at once with its log if it exits. */
async function waitForListener(child: ChildProcess, port: number, log: () => string): Promise<void> {
  let gone = false;
  const exit = exited(child).then((code) => {
    gone = true;
    return code;
  });
  for (;;) {
    if (await tryConnect(port)) return;
    if (gone) throw new Error(`mosquitto exited with ${await exit} before listening:\n${log()}`);
    // A short pause between refused connects, so the loop does not spin while the broker starts.
    await Promise.race([exit, new Promise((r) => setTimeout(r, 20))]);
  }
}

/**
 * A real Mosquitto 2 with the config Perch generates, on a free loopback
 * port, its files in `dir` (a fresh temp folder by default). `config`
 * overrides generated options (TLS, limits).
 */
export async function startMosquitto(opts: { dir?: string; config?: Omit<WriteMosquittoConfigOptions, 'outDir' | 'host' | 'port'> } = {}): Promise<MosquittoServer> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'perch-mosquitto-')));
  // Started as root, mosquitto would drop to its own user, which cannot write a root-owned temp folder.
  const user = userInfo().username;
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    const files = await writeMosquittoConfig({ ...opts.config, outDir: dir, host: '127.0.0.1', port, user, logDest: 'stderr' });
    const child = spawn(MOSQUITTO_BIN, ['-c', files.confFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let logText = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      logText += s;
    });
    const log = () => logText;
    try {
      await waitForListener(child, port, log);
    } catch (err) {
      // Another process may have taken the port between our probe and the broker's bind.
      if (attempt < 5 && /Address already in use/i.test(logText)) continue;
      throw err;
    }
    return {
      url: `mqtt://127.0.0.1:${port}`,
      host: '127.0.0.1',
      port,
      dir,
      files,
      admin: { username: files.username, password: files.password },
      log,
      stop: async () => {
        const done = exited(child);
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await done;
        clearTimeout(timer);
        if (opts.dir === undefined) await rm(dir, { recursive: true, force: true });
      },
    };
  }
}

/** An mqtt.js client of `server` that does not reconnect by itself; rejects with the CONNACK refusal. */
export function connectTo(server: Pick<MosquittoServer, 'url'>, opts: IClientOptions & { username: string; password: string; clientId: string }): Promise<MqttClient> {
  return mqtt.connectAsync(server.url, { reconnectPeriod: 0, connectTimeout: 10_000, ...opts });
}

/** Resolves when the client's connection closes (the broker kicked it, or it ended). */
export function whenClosed(client: MqttClient): Promise<void> {
  if (!client.connected) return Promise.resolve();
  return new Promise((resolve) => client.once('close', () => resolve()));
}

/** The SUBACK's codes, whether mqtt.js resolved or (for any failure code) rejected. */
export async function grantedCodes(subscribing: Promise<ISubscriptionGrant[]>): Promise<number[]> {
  try {
    return (await subscribing).map((g) => g.qos);
  } catch (err) {
    const granted = (err as { packet?: { granted?: (number | { qos: number })[] } }).packet?.granted;
    if (granted === undefined) throw err;
    return granted.map((g) => (typeof g === 'number' ? g : g.qos));
  }
}

/** The reason code of a refused CONNECT or an MQTT 5 PUBACK (0x87: not authorised). */
export function reasonOf(err: unknown): number | undefined {
  return (err as ErrorWithReasonCode | undefined)?.code;
}
