/**
 * A what-if for fleet-scale: aedes's memory persistence answers every
 * subscription by testing the subscribed pattern against every retained
 * message (aedes-persistence 11, `retainedMessagesByPattern`), so each
 * device subscribing its own `desired` topic costs time in proportion to
 * the retained messages of the whole fleet (its status, reported and
 * desired states: about three per device). Connecting N devices costs N^2:
 * at 20,000 retained messages one subscription takes about 8 ms on this
 * machine, and a fleet of 10,000 cannot connect, or reconnect after a
 * restart, at any useful rate.
 *
 * This persistence keeps the same memory persistence and also indexes
 * retained messages by topic, answering wildcard-free patterns (all a
 * device subscribes) with one map lookup; a pattern with `+` or `#` takes
 * the original scan. `PERCH_BENCH_FLEET_RETAINED_INDEX=1` gives it to both
 * servers of fleet-scale to show what the change would buy; the control
 * plane does not use it.
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';

const require = createRequire(import.meta.url);

interface RetainedPacket {
  topic: string;
  payload: Buffer;
}

interface AsyncPersistenceLike {
  storeRetained(packet: RetainedPacket): Promise<void>;
  createRetainedStreamCombi(patterns: string[]): Readable;
  createRetainedStream(pattern: string): Readable;
}

type AsyncPersistenceClass = new (opts?: Record<string, unknown>) => AsyncPersistenceLike;
type CallBackPersistenceClass = new (factory: (opts: Record<string, unknown>) => AsyncPersistenceLike, opts?: Record<string, unknown>) => unknown;

// aedes-persistence exports only its factory; its two classes are plain CommonJS files of the package.
const AsyncPersistence = require('aedes-persistence/asyncPersistence.js') as AsyncPersistenceClass;
const { CallBackPersistence } = require('aedes-persistence/callBackPersistence.js') as { CallBackPersistence: CallBackPersistenceClass };

const hasWildcard = (pattern: string): boolean => pattern.includes('+') || pattern.includes('#');

class IndexedRetainedPersistence extends AsyncPersistence {
  private readonly byTopic = new Map<string, RetainedPacket>();

  override async storeRetained(packet: RetainedPacket): Promise<void> {
    await super.storeRetained(packet);
    if (packet.payload.length === 0) this.byTopic.delete(packet.topic);
    else this.byTopic.set(packet.topic, { ...packet });
  }

  override createRetainedStreamCombi(patterns: string[]): Readable {
    if (patterns.some(hasWildcard)) return super.createRetainedStreamCombi(patterns);
    return Readable.from(patterns.flatMap((p) => this.byTopic.get(p) ?? []));
  }

  override createRetainedStream(pattern: string): Readable {
    if (hasWildcard(pattern)) return super.createRetainedStream(pattern);
    return Readable.from(this.byTopic.has(pattern) ? [this.byTopic.get(pattern) as RetainedPacket] : []);
  }
}

/** An aedes `persistence` option: the memory persistence with retained messages indexed by topic. */
export function indexedRetainedPersistence(): unknown {
  return new CallBackPersistence((opts) => new IndexedRetainedPersistence(opts));
}
