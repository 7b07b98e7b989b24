import { emptyHistogram, LATENCY_SPEC, observe, SHADOW_CONFUSION_MAX_PAIRS, type ModelRef, type ShadowWindow } from '@perch/shared';

/**
 * Distinct label pairs counted in one window before further new pairs go
 * straight to the overflow: memory stays bounded even for a model with a
 * thousand labels paired with a garbage challenger.
 */
const MAX_TRACKED_PAIRS = 4096;

/** Champion against challenger over one telemetry window: the counts behind its `shadow` section. */
export class ShadowComparison {
  private framesCompared = 0;
  private agreed = 0;
  private skippedBusy = 0;
  private errors = 0;
  private overflow = 0;
  /** keyed by the two labels joined with a NUL, which no label contains */
  private readonly pairs = new Map<string, number>();
  private readonly cameras = new Map<string, { framesCompared: number; agreed: number }>();
  private readonly championMs = emptyHistogram(LATENCY_SPEC);
  private readonly challengerMs = emptyHistogram(LATENCY_SPEC);

  constructor(
    readonly model: ModelRef,
    readonly sampleRate: number,
  ) {}

  compared(cameraId: string, championLabel: string, challengerLabel: string, championMs: number, challengerMs: number): void {
    const same = championLabel === challengerLabel;
    this.framesCompared++;
    if (same) this.agreed++;
    const camera = this.cameras.get(cameraId) ?? { framesCompared: 0, agreed: 0 };
    camera.framesCompared++;
    if (same) camera.agreed++;
    this.cameras.set(cameraId, camera);
    const key = `${championLabel}\u0000${challengerLabel}`;
    const n = this.pairs.get(key);
    if (n !== undefined) this.pairs.set(key, n + 1);
    else if (this.pairs.size < MAX_TRACKED_PAIRS) this.pairs.set(key, 1);
    else this.overflow++;
    observe(this.championMs, Math.max(0, championMs));
    observe(this.challengerMs, Math.max(0, challengerMs));
  }

  skipped(): void {
    this.skippedBusy++;
  }

  failed(): void {
    this.errors++;
  }

  /** The window's section: the most frequent pairs first, up to the contract's limit; the rest in the overflow. */
  section(): ShadowWindow {
    const sorted = [...this.pairs].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const listed = sorted.slice(0, SHADOW_CONFUSION_MAX_PAIRS);
    const unlisted = sorted.slice(SHADOW_CONFUSION_MAX_PAIRS).reduce((n, [, c]) => n + c, 0);
    return {
      model: this.model,
      sampleRate: this.sampleRate,
      framesCompared: this.framesCompared,
      agreed: this.agreed,
      skippedBusy: this.skippedBusy,
      errors: this.errors,
      confusion: listed.map(([key, count]) => {
        const [champion = '', challenger = ''] = key.split('\u0000');
        return { champion, challenger, count };
      }),
      confusionOverflow: this.overflow + unlisted,
      championInferenceMs: { ...this.championMs, counts: [...this.championMs.counts] },
      challengerInferenceMs: { ...this.challengerMs, counts: [...this.challengerMs.counts] },
      cameras: [...this.cameras].map(([cameraId, c]) => ({ cameraId, ...c })),
    };
  }
}
