import { execFile } from 'node:child_process';

/** What differs between the ffmpeg builds a box may have, found by asking the binary once. */
export interface FfmpegCapabilities {
  /** first line of `ffmpeg -version` */
  version: string;
  /**
   * The RTSP demuxer's socket I/O timeout option (microseconds). ffmpeg 4.x
   * calls it `-stimeout`, and there `-timeout` means "wait for an incoming
   * connection" (listen mode: it fails with "Address already in use");
   * from 5.0 `-timeout` is the socket timeout and `-stimeout` is gone.
   */
  rtspSocketTimeout: '-stimeout' | '-timeout';
  /**
   * Whether ffmpeg can resolve host names. The static build bundled by
   * @ffmpeg-installer (2018) crashes (SIGSEGV) on any name lookup, even
   * `localhost`: the agent then resolves names itself and hands ffmpeg an
   * IP address.
   */
  resolvesHostNames: boolean;
  /**
   * Whether `-loglevel level+…` is understood (ffmpeg 4.0 on): each stderr
   * line then names its severity, which tells ffmpeg's fatal line from a
   * passing warning. Without it the stall watchdog still ends a hung run.
   */
  logLevelTags: boolean;
  /**
   * How to tell ffmpeg to write frames with their own timestamps, neither
   * duplicated nor dropped to a constant rate: `-fps_mode` from 5.1, where
   * `-vsync` still works but warns on every start.
   */
  passthroughOption: '-fps_mode' | '-vsync';
}

/** Reads the RTSP timeout option from `ffmpeg -h demuxer=rtsp`. */
export function rtspTimeoutOption(help: string): FfmpegCapabilities['rtspSocketTimeout'] {
  const timeoutLine = help.split('\n').find((l) => /^\s*-timeout\s/.test(l));
  if (timeoutLine !== undefined && /microsecond/i.test(timeoutLine)) return '-timeout';
  if (/^\s*-stimeout\s/m.test(help)) return '-stimeout';
  return '-timeout';
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(ffmpegPath: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(ffmpegPath, args, { timeout: 15_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      // A missing or unusable binary is the caller's error; a non-zero exit is an answer.
      const code = (err as NodeJS.ErrnoException | null)?.code;
      if (typeof code === 'string') return reject(new Error(`cannot run ffmpeg at ${ffmpegPath}: ${code}`));
      const e = err as (Error & { code?: number; signal?: NodeJS.Signals }) | null;
      resolve({ code: e ? (e.code ?? null) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

async function probe(ffmpegPath: string): Promise<FfmpegCapabilities> {
  const [version, help, lookup, tags, fpsMode] = await Promise.all([
    run(ffmpegPath, ['-hide_banner', '-version']),
    run(ffmpegPath, ['-hide_banner', '-h', 'demuxer=rtsp']),
    // Resolving `localhost` needs no network; the connection to port 9 may fail, that is fine.
    run(ffmpegPath, ['-hide_banner', '-nostdin', '-loglevel', 'quiet', '-i', 'tcp://localhost:9?timeout=1000000', '-f', 'null', '-']),
    run(ffmpegPath, ['-hide_banner', '-loglevel', 'level+error', '-version']),
    run(ffmpegPath, ['-hide_banner', '-nostdin', '-loglevel', 'quiet', '-f', 'lavfi', '-i', 'nullsrc=s=16x16:d=0.1', '-fps_mode', 'passthrough', '-f', 'null', '-']),
  ]);
  return {
    version: version.stdout.split('\n')[0]?.trim() ?? '',
    rtspSocketTimeout: rtspTimeoutOption(help.stdout + help.stderr),
    resolvesHostNames: lookup.signal === null && (lookup.code === null || lookup.code < 128),
    logLevelTags: tags.code === 0,
    passthroughOption: fpsMode.code === 0 ? '-fps_mode' : '-vsync',
  };
}

const probes = new Map<string, Promise<FfmpegCapabilities>>();

/** Probes each ffmpeg binary once per process; a failed probe is forgotten, so a later call tries again. */
export function ffmpegCapabilities(ffmpegPath: string): Promise<FfmpegCapabilities> {
  let p = probes.get(ffmpegPath);
  if (!p) {
    p = probe(ffmpegPath);
    probes.set(ffmpegPath, p);
    p.catch(() => probes.delete(ffmpegPath));
  }
  return p;
}
