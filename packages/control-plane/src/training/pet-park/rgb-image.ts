/** Raw 8-bit RGB image, row-major HWC: the form frames take between renderer, ffmpeg and model. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}
