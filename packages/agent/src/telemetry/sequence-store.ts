import { join } from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeFileAtomic } from '@perch/shared';

const seqFileSchema = z.object({ next: z.number().int().nonnegative() });

/**
 * Telemetry sequence numbers that survive restarts: the control plane
 * ingests idempotently on (deviceId, seq) and sees gaps. A number is written
 * to disk as used before its window leaves, so a crash can skip a number
 * but never reuse one.
 */
export class SequenceStore {
  private next = 0;
  private chain: Promise<unknown> = Promise.resolve();
  readonly file: string;

  /** `fileName`: one file per numbered stream (telemetry windows, detection events) */
  constructor(dataDir: string, fileName = 'telemetry-seq.json') {
    this.file = join(dataDir, fileName);
  }

  async load(): Promise<void> {
    const raw = await readJsonFile(this.file);
    if (raw === undefined) return;
    const parsed = seqFileSchema.safeParse(raw);
    if (!parsed.success) throw new Error(`${this.file}: expected {"next": <non-negative integer>}`);
    this.next = parsed.data.next;
  }

  /** The next sequence number, persisted before it is returned. */
  allocate(): Promise<number> {
    const p = this.chain.then(async () => {
      const seq = this.next;
      await writeFileAtomic(this.file, JSON.stringify({ next: seq + 1 }));
      this.next = seq + 1;
      return seq;
    });
    this.chain = p.catch(() => undefined);
    return p;
  }
}
