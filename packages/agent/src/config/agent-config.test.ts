import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../test-support/harness.js';
import { ConfigError, loadAgentConfig } from './agent-config.js';

describe('agent config', () => {
  let dir: { path: string; remove(): Promise<void> };
  /** enough of a root.json for the config's shape check; its signatures are TUF's to check, at start */
  const root = JSON.stringify({ signed: { _type: 'root', version: 1 }, signatures: [{ keyid: 'k', sig: 's' }] });

  beforeEach(async () => {
    dir = await tempDir();
    await writeFile(join(dir.path, 'root.json'), root);
  });
  afterEach(() => dir.remove());

  async function write(name: string, text: string): Promise<string> {
    const path = join(dir.path, name);
    await writeFile(path, text);
    return path;
  }

  it('fills defaults, reads secrets from files and resolves paths against the config folder', async () => {
    await mkdir(join(dir.path, 'secrets'));
    await write('secrets/password', 's3cret\n');
    const file = await write(
      'agent.yaml',
      [
        'deviceId: gate-7',
        'dataDir: ./data',
        'broker: { passwordFile: secrets/password }',
        'trust: { rootFile: root.json }',
        'ffmpegPath: /usr/bin/ffmpeg',
        'cameras:',
        '  - id: front',
        '    source: { kind: file, path: videos/front.mp4 }',
        '  - id: test',
        '    fps: 2',
        '    source: { kind: synthetic }',
        '  - id: gate',
        '    stallTimeoutMs: 5000',
        '    source: { kind: rtsp, url: "rtsp://10.0.0.7/live", username: viewer, passwordFile: secrets/password }',
      ].join('\n'),
    );
    const cfg = await loadAgentConfig(file);
    expect(cfg.deviceId).toBe('gate-7');
    expect(cfg.dataDir).toBe(join(dir.path, 'data'));
    expect(cfg.broker).toMatchObject({ url: 'mqtt://127.0.0.1:1883', username: 'gate-7', password: 's3cret', reconnect: { minMs: 500, maxMs: 30000 } });
    expect(cfg.trust.rootFile).toBe(join(dir.path, 'root.json'));
    expect(cfg.ffmpegPath).toBe('/usr/bin/ffmpeg');
    expect(cfg.telemetry.windowSeconds).toBe(10);
    expect(cfg.inference).toEqual({ intraOpThreads: 1, maxBatch: 4, maxBatchDelayMs: 10, batching: 'auto', pipelineDepth: 2, allowSpinning: false });
    expect(cfg.ffmpegNice).toBe(10);
    expect(cfg.decoderCpus).toBe('auto');
    expect(cfg.deployment).toEqual({ healthWindowSeconds: 60, maxErrorRate: 0.05, maxLatencyFactor: 5, latencyFloorMs: 50, minFrames: 20 });
    expect(cfg.download).toEqual({ chunkBytes: 1048576, window: 8, requestTimeoutMs: 10000, maxRetries: 5 });
    expect(cfg.log.level).toBe('info');
    expect(cfg.cameras).toEqual([
      { id: 'front', fps: 5, stallTimeoutMs: 20_000, source: { kind: 'file', path: join(dir.path, 'videos/front.mp4'), loop: true } },
      { id: 'test', fps: 2, stallTimeoutMs: 20_000, source: { kind: 'synthetic', pattern: 'testsrc2' } },
      // The camera's password stays in its file (read at each ffmpeg start); only the path is resolved.
      {
        id: 'gate',
        fps: 5,
        stallTimeoutMs: 5000,
        source: { kind: 'rtsp', url: 'rtsp://10.0.0.7/live', transport: 'tcp', timeoutMs: 10_000, username: 'viewer', passwordFile: join(dir.path, 'secrets/password') },
      },
    ]);
  });

  it('defaults ffmpegPath to PERCH_FFMPEG_PATH, else the bundled binary', async () => {
    const file = await write('agent.yaml', 'deviceId: d1\ndataDir: data\ntrust: { rootFile: root.json }\n');
    const before = process.env.PERCH_FFMPEG_PATH;
    try {
      process.env.PERCH_FFMPEG_PATH = '/opt/ffmpeg';
      expect((await loadAgentConfig(file)).ffmpegPath).toBe('/opt/ffmpeg');
      delete process.env.PERCH_FFMPEG_PATH;
      expect((await loadAgentConfig(file)).ffmpegPath).toMatch(/ffmpeg$/);
    } finally {
      if (before === undefined) delete process.env.PERCH_FFMPEG_PATH;
      else process.env.PERCH_FFMPEG_PATH = before;
    }
  });

  it('lists every problem at once, each with its path', async () => {
    const file = await write(
      'agent.yaml',
      [
        'deviceId: "bad id!"',
        'broker: { url: http://x, password: a, passwordFile: b, reconnect: { minMs: 100, maxMs: 50 } }',
        'trust: { rootFile: root.json, keys: [] }',
        'telemetry: { windowSeconds: 0 }',
        'ffmpegNice: 20',
        'decoderCpus: [-1]',
        'inference: { pipelineDepth: 3, batching: sometimes }',
        'cameras:',
        '  - id: front',
        '    source: { kind: file }',
        '  - id: front',
        '    fps: -1',
        '    decodeThreads: -1',
        '    source: { kind: rtsp, url: x }',
        'download: { chunkBytes: 99999999 }',
        'deployment: { healthWindowSeconds: -1, maxErrorRate: 2, minFrames: 0, window: 5 }',
        'colour: blue',
      ].join('\n'),
    );
    const err = await loadAgentConfig(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    const paths = problems.map((p) => p.slice(0, p.indexOf(':')));
    expect(paths).toEqual(
      expect.arrayContaining([
        'deviceId',
        'dataDir',
        'broker.url',
        'broker.reconnect.maxMs',
        'broker.passwordFile',
        'trust',
        'telemetry.windowSeconds',
        'ffmpegNice',
        'decoderCpus.0',
        'inference.pipelineDepth',
        'inference.batching',
        'cameras.1.decodeThreads',
        'cameras.0.source.path',
        'cameras.1.fps',
        'cameras.1.source.url',
        'download.chunkBytes',
        'deployment.healthWindowSeconds',
        'deployment.maxErrorRate',
        'deployment.minFrames',
        'deployment',
        '(root)',
      ]),
    );
    expect(problems).toContain('cameras.0.source.path: Required');
    expect(problems).toContain('dataDir: Required');
    expect((err as ConfigError).message).toContain(file);
  });

  it('reports unreadable secret files, and root files that are malformed or not a root', async () => {
    await write('bad-root.json', '{"signed": {"_type": "root"');
    const file = await write('agent.yaml', 'deviceId: d1\ndataDir: data\nbroker: { passwordFile: missing }\ntrust: { rootFile: bad-root.json }\n');
    const err = (await loadAgentConfig(file).catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.problems).toHaveLength(2);
    expect(err.problems[0]).toMatch(/^broker\.passwordFile: cannot read .*missing/);
    expect(err.problems[1]).toMatch(/^trust\.rootFile: .*malformed JSON/);
    await write('targets.json', JSON.stringify({ signed: { _type: 'targets', version: 1 }, signatures: [] }));
    const notRoot = await write('agent2.yaml', 'deviceId: d1\ndataDir: data\ntrust: { rootFile: targets.json }\n');
    const err2 = (await loadAgentConfig(notRoot).catch((e: unknown) => e)) as ConfigError;
    expect(err2.problems).toEqual(expect.arrayContaining([expect.stringMatching(/^trust\.rootFile\(.*targets\.json\)\.signed\._type/)]));
    const missing = await write('agent3.yaml', 'deviceId: d1\ndataDir: data\ntrust: { rootFile: nowhere.json }\n');
    expect(((await loadAgentConfig(missing).catch((e: unknown) => e)) as ConfigError).problems).toEqual([expect.stringMatching(/^trust\.rootFile: cannot use .*nowhere\.json/)]);
  });

  it('reads a claim token from its file, and names a short, doubled or missing one', async () => {
    await write('claim-token', 'a-site-claim-token-of-enough-length\n');
    const ok = await loadAgentConfig(await write('ok.yaml', 'deviceId: d1\ndataDir: data\nbroker: { claimTokenFile: claim-token }\ntrust: { rootFile: root.json }\n'));
    expect(ok.broker).toMatchObject({ claimToken: 'a-site-claim-token-of-enough-length', password: undefined, username: 'd1' });
    await write('short-token', 'short\n');
    const problems = async (broker: string) =>
      ((await loadAgentConfig(await write('bad.yaml', `deviceId: d1\ndataDir: data\nbroker: ${broker}\ntrust: { rootFile: root.json }\n`)).catch((e: unknown) => e)) as ConfigError).problems;
    expect(await problems('{ claimTokenFile: short-token }')).toEqual([expect.stringMatching(/^broker\.claimTokenFile\(.*short-token\): a claim token has at least 16 characters/)]);
    expect(await problems('{ claimTokenFile: nope }')).toEqual([expect.stringMatching(/^broker\.claimTokenFile: cannot read .*nope/)]);
    expect(await problems('{ claimToken: a-site-claim-token-of-enough-length, claimTokenFile: claim-token }')).toEqual(['broker.claimTokenFile: give claimToken or claimTokenFile, not both']);
  });

  it('reads the TLS files of an mqtts broker, and names a missing or non-PEM file, a half pair and a plain url', async () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    await write('ca.pem', pem);
    await write('client.pem', pem);
    await write('client.key', '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n');
    await write('not-pem.txt', 'hello');
    const config = (broker: string) => `deviceId: d1\ndataDir: data\nbroker: ${broker}\ntrust: { rootFile: root.json }\n`;
    const ok = await loadAgentConfig(await write('ok.yaml', config('{ url: "mqtts://broker:8883", caFile: ca.pem, certFile: client.pem, keyFile: client.key }')));
    expect(ok.broker.tls?.ca?.toString()).toBe(pem);
    expect(ok.broker.tls?.key?.toString()).toMatch(/PRIVATE KEY/);
    const plain = await loadAgentConfig(await write('plain.yaml', config('{ url: "mqtt://broker:1883" }')));
    expect(plain.broker.tls).toBeUndefined();
    const problems = async (broker: string) => ((await loadAgentConfig(await write('bad.yaml', config(broker))).catch((e: unknown) => e)) as ConfigError).problems;
    expect(await problems('{ url: "mqtts://broker:8883", caFile: nope.pem }')).toEqual([expect.stringMatching(/^broker\.caFile: cannot read .*nope\.pem/)]);
    expect(await problems('{ url: "mqtts://broker:8883", caFile: not-pem.txt }')).toEqual([expect.stringMatching(/^broker\.caFile: .*not-pem\.txt is not PEM/)]);
    expect(await problems('{ url: "mqtts://broker:8883", certFile: client.pem }')).toEqual(['broker.keyFile: give certFile and keyFile together']);
    expect(await problems('{ url: "mqtt://broker:1883", caFile: ca.pem }')).toEqual(['broker.url: caFile, certFile and keyFile need a TLS url: mqtts://, ssl:// or wss://']);
  });

  it('reports a camera password file that cannot be read', async () => {
    const file = await write(
      'agent.yaml',
      `deviceId: d1\ndataDir: data\ntrust: { rootFile: root.json }\ncameras:\n  - id: gate\n    source: { kind: mjpeg, url: "http://10.0.0.8/video.mjpg", username: u, passwordFile: nope }\n`,
    );
    const err = (await loadAgentConfig(file).catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.problems).toEqual([expect.stringMatching(/^cameras\.0\.source\.passwordFile: cannot read .*nope/)]);
  });

  it('reports YAML syntax errors and a missing file', async () => {
    const bad = await write('agent.yaml', 'deviceId: [unclosed\n');
    await expect(loadAgentConfig(bad)).rejects.toThrow(/YAML/);
    await expect(loadAgentConfig(join(dir.path, 'nope.yaml'))).rejects.toThrow(/cannot read/);
  });
});
