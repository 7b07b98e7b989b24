import sharp from 'sharp';

/**
 * An rgb24 frame as JPEG. sharp encodes in libuv's thread pool, off the
 * event loop. Frames are at the model's input size (ffmpeg scaled them for
 * inference), so a snapshot shows what the model saw, not the camera's
 * full resolution.
 */
export function encodeJpeg(frame: Uint8Array, width: number, height: number, quality = 80): Promise<Buffer> {
  if (frame.byteLength !== width * height * 3) {
    return Promise.reject(new RangeError(`frame has ${frame.byteLength} bytes, ${width}x${height} rgb24 needs ${width * height * 3}`));
  }
  return sharp(frame, { raw: { width, height, channels: 3 } }).jpeg({ quality }).toBuffer();
}
