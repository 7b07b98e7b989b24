import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { cameraSchema, type CameraConfig } from '../config/agent-config.js';

export const STANDALONE_CAMERA_ID = 'camera';

/**
 * `--camera` as the config's camera source: `synthetic[:pattern]`,
 * `rtsp://…`, `http(s)://…` (MJPEG), `/dev/videoN`, or else a video file
 * (looped). The result goes through the config's own camera schema, so a
 * source kind this build does not have is reported, not guessed at.
 */
export function cameraFromSource(source: string, fps: number): { ok: true; camera: CameraConfig } | { ok: false; problems: string[] } {
  const s = source.trim();
  let raw: Record<string, unknown>;
  if (s === 'synthetic' || s.startsWith('synthetic:')) {
    const pattern = s.slice('synthetic:'.length);
    raw = s === 'synthetic' ? { kind: 'synthetic' } : { kind: 'synthetic', pattern };
  } else if (/^rtsps?:\/\//i.test(s)) raw = { kind: 'rtsp', url: s };
  else if (/^https?:\/\//i.test(s)) raw = { kind: 'mjpeg', url: s };
  else if (/^\/dev\/video\d+$/.test(s)) raw = { kind: 'v4l2', device: s };
  else {
    const path = resolve(s);
    if (!existsSync(path)) return { ok: false, problems: [`--camera: no such file ${path} (a source is a video file, rtsp://…, http(s)://… MJPEG, /dev/videoN or synthetic)`] };
    raw = { kind: 'file', path, loop: true };
  }
  const parsed = cameraSchema.safeParse({ id: STANDALONE_CAMERA_ID, fps, source: raw });
  if (parsed.success) return { ok: true, camera: parsed.data };
  return {
    ok: false,
    problems: parsed.error.issues.map((i) => {
      const path = i.path.map(String).join('.');
      const flag = path === 'fps' ? '--fps' : '--camera';
      if (path === 'source.kind' || (path === 'source' && i.code === 'invalid_union')) return `--camera: ${String(raw.kind)} sources are not supported by this agent build`;
      return `${flag}: ${path === 'fps' ? '' : `${path}: `}${i.message}`;
    }),
  };
}
