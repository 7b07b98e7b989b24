/** Rates are counted in millionths: whole numbers add up exactly, where 0.1 ten times is not 1. */
const SCALE = 1_000_000;

/**
 * Picks a fixed fraction of each camera's frames, deterministically: every
 * frame adds the rate to the camera's credit and a frame that brings the
 * credit to one is picked. Over n frames a camera gets floor(n x rate) or
 * one more, evenly spread, and every camera gets its share (one credit for
 * all would, with two cameras taking turns and a rate of 1/2, pick one
 * camera's frames only).
 */
export class FrameSampler {
  private readonly credit = new Map<string, number>();
  private step: number;

  constructor(rate: number) {
    this.step = FrameSampler.steps(rate);
  }

  private static steps(rate: number): number {
    if (!(rate > 0 && rate <= 1)) throw new RangeError(`sample rate must be in (0, 1], got ${rate}`);
    return Math.max(1, Math.round(rate * SCALE));
  }

  get rate(): number {
    return this.step / SCALE;
  }

  set rate(rate: number) {
    this.step = FrameSampler.steps(rate);
  }

  /** Whether this frame of `cameraId` is picked. */
  take(cameraId: string): boolean {
    const credit = (this.credit.get(cameraId) ?? 0) + this.step;
    const picked = credit >= SCALE;
    this.credit.set(cameraId, picked ? credit - SCALE : credit);
    return picked;
  }
}
