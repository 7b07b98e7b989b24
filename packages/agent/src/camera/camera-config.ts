import { access, constants } from 'node:fs/promises';
import { z } from 'zod';

const cameraIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'camera id: 1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit');

/** ffmpeg's own connect/read timeout for network sources. */
const timeoutMsSchema = z.number().int().min(100).max(120_000).default(10_000);

/**
 * Credentials for a network camera: a user name, and the password in a file
 * (never in the config, never logged). A password may also come inside the
 * URL (`rtsp://user:pass@host/…`); it is masked in logs all the same.
 */
const credentials = {
  username: z.string().min(1).max(256).optional(),
  passwordFile: z.string().min(1).optional(),
};

function credentialsProblems(s: { url: string; username?: string | undefined; passwordFile?: string | undefined }, ctx: z.core.$RefinementCtx): void {
  if (s.passwordFile !== undefined && s.username === undefined) ctx.addIssue({ code: 'custom', message: 'passwordFile needs a username', path: ['username'] });
  if ((s.username !== undefined || s.passwordFile !== undefined) && /^[a-z]+:\/\/[^/@]*@/i.test(s.url)) {
    ctx.addIssue({ code: 'custom', message: 'give credentials in the url or as username/passwordFile, not both', path: ['url'] });
  }
}

const rtspSourceSchema = z
  .object({
    kind: z.literal('rtsp'),
    url: z.string().regex(/^rtsp:\/\/[^/\s]+(\/\S*)?$/i, 'rtsp url: rtsp://host[:port]/path'),
    /** TCP interleaving survives NAT and lossy Wi-Fi; UDP only where the network is known to be clean */
    transport: z.enum(['tcp', 'udp']).default('tcp'),
    timeoutMs: timeoutMsSchema,
    ...credentials,
  })
  .strict()
  .superRefine(credentialsProblems);

/** An HTTP multipart (multipart/x-mixed-replace) JPEG stream. */
const mjpegSourceSchema = z
  .object({
    kind: z.literal('mjpeg'),
    url: z.string().regex(/^https?:\/\/[^/\s]+(\/\S*)?$/i, 'mjpeg url: http(s)://host[:port]/path'),
    timeoutMs: timeoutMsSchema,
    ...credentials,
  })
  .strict()
  .superRefine(credentialsProblems);

/** A local capture device; format, size and rate ask the driver for a mode, ffmpeg still scales to the model. */
const v4l2SourceSchema = z
  .object({
    kind: z.literal('v4l2'),
    device: z.string().regex(/^\/dev\/\S+$/, 'device: a path under /dev, e.g. /dev/video0'),
    /** e.g. mjpeg, yuyv422, h264: what `v4l2-ctl --list-formats` shows */
    inputFormat: z.string().regex(/^[a-z0-9_]{1,32}$/, 'inputFormat: an ffmpeg pixel format or codec name, e.g. mjpeg or yuyv422').optional(),
    width: z.number().int().min(16).max(8192).optional(),
    height: z.number().int().min(16).max(8192).optional(),
    framerate: z.number().positive().max(240).optional(),
  })
  .strict()
  .refine((s) => (s.width === undefined) === (s.height === undefined), { message: 'give width and height together', path: ['height'] });

export const cameraSourceSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('file'), path: z.string().min(1), loop: z.boolean().default(true) }).strict(),
  /** a lavfi test pattern: a camera that needs no hardware, for tests and bring-up */
  z.object({ kind: z.literal('synthetic'), pattern: z.enum(['testsrc2', 'testsrc', 'smptebars']).default('testsrc2') }).strict(),
  rtspSourceSchema,
  mjpegSourceSchema,
  v4l2SourceSchema,
]);

/** One camera of the config; also what standalone mode builds from `--camera`. */
export const cameraSchema = z
  .object({
    id: cameraIdSchema,
    fps: z.number().positive().max(60).default(5),
    source: cameraSourceSchema,
    /** no frame for this long and ffmpeg is restarted (Frigate's 20 s); the first frame of a network source also gets its timeoutMs */
    stallTimeoutMs: z.number().int().min(1000).max(600_000).default(20_000),
    /**
     * Decoder threads. 1 hands each frame on as soon as it is decoded;
     * ffmpeg's own choice (0) decodes several frames in parallel and holds
     * each back by one frame per extra thread (~80 ms at 25 fps on 2 cores,
     * measured as frame delay by the stream clock) — worth it only for one
     * big stream on many cores. Default 1.
     */
    decodeThreads: z.number().int().min(0).max(16).optional(),
  })
  .strict();

export type CameraConfig = z.infer<typeof cameraSchema>;
export type CameraSource = z.infer<typeof cameraSourceSchema>;

/**
 * Paths made absolute against the config's folder, and password files
 * checked now, so a typo is a config error at start rather than a camera
 * that never connects. The password itself is read at each ffmpeg start,
 * so a rotated password needs no agent restart.
 */
export async function resolveCameras(cameras: CameraConfig[], at: (path: string) => string): Promise<{ cameras: CameraConfig[]; problems: string[] }> {
  const problems: string[] = [];
  const resolved = await Promise.all(
    cameras.map(async (c, i): Promise<CameraConfig> => {
      const s = c.source;
      if (s.kind === 'file') return { ...c, source: { ...s, path: at(s.path) } };
      if ((s.kind === 'rtsp' || s.kind === 'mjpeg') && s.passwordFile !== undefined) {
        const passwordFile = at(s.passwordFile);
        await access(passwordFile, constants.R_OK).catch((err: Error) => problems.push(`cameras.${i}.source.passwordFile: cannot read ${passwordFile}: ${err.message}`));
        return { ...c, source: { ...s, passwordFile } };
      }
      return c;
    }),
  );
  return { cameras: resolved, problems };
}
