/**
 * aedes's memory persistence answers every subscription by testing the
 * subscribed pattern against every retained message (aedes-persistence 11,
 * `retainedMessagesByPattern`), so each device subscribing its own `desired`
 * topic costs time in proportion to the retained messages of the whole fleet
 * (its status, reported and desired states: about three per device), and
 * connecting N devices costs N^2: at 20,000 retained messages one
 * subscription took about 8 ms, and a fleet of 10,000 could not connect, or
 * reconnect after a restart, at any useful rate (bench/fleet-scale.ts).
 *
 * This is the same memory persistence with retained messages also indexed by
 * topic: a wildcard-free pattern (all a device subscribes) is one map lookup;
 * a pattern with `+` or `#` takes the original scan.
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
