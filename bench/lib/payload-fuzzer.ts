/**
 * Malformed and schema-invalid payloads for every message kind a device
 * (or a claimant) may send the control plane, from a seed: the same seed
 * gives the same payloads in the same order. Each case starts from a valid
 * document of its kind, built as an agent would, and is then mutated:
 * random bytes, invalid UTF-8, truncated JSON, a wrong root type, a field
 * removed or changed to a value of another type, huge and non-finite
 * numbers written as JSON text, numbers as strings ("NaN", "Infinity"),
 * deep nesting, long strings, prototype-pollution keys (`__proto__`,
 * `constructor`, `prototype`), duplicate keys, another device's id, unknown
 * extra fields, an empty payload, and payloads over the broker's limit for
 * their topic. Some cases stay unmutated, and some mutations leave a valid
 * document, so ingestion can be checked too.
 *
 * The expected outcome of each case is decided by `judgePayload`, from the
 * contract alone: the broker's payload limit for the topic kind, then the
 * same decode (UTF-8, JSON, the kind's zod schema in @perch/shared) and
 * device check the control plane's dispatcher applies. The fuzzer does not
 * know how the control plane is built; it knows what it must accept.
 */
import {
  chunkRequestSchema,
  decodeJson,
  detectionEventSchema,
  deviceStatusSchema,
  emptyHistogram,
  LATENCY_SPEC,
  metadataRequestSchema,
  observe,
  provisionRequestSchema,
  reportedStateSchema,
  telemetryWindowSchema,
  type DeviceTopicKind,
} from '@perch/shared';
import type { z } from 'zod';
import { DEFAULT_MAX_PAYLOAD_BYTES, PayloadLimits, type MaxPayloadBytes } from '../../packages/control-plane/src/broker/payload-limits.js';
import { createRng, type Rng } from '../../packages/control-plane/src/training/pet-park/prng.js';

export const FUZZ_KINDS = ['telemetry', 'events', 'status', 'reported', 'artifact/request', 'metadata/request', 'provision/request'] as const satisfies readonly DeviceTopicKind[];
export type FuzzKind = (typeof FUZZ_KINDS)[number];

const SCHEMAS: Record<FuzzKind, z.ZodType> = {
  telemetry: telemetryWindowSchema,
  events: detectionEventSchema,
  status: deviceStatusSchema,
  reported: reportedStateSchema,
  'artifact/request': chunkRequestSchema,
  'metadata/request': metadataRequestSchema,
  'provision/request': provisionRequestSchema,
};

export const MUTATIONS = [
  'valid',
  'extra-fields',
  'field-removed',
  'field-changed',
  'huge-number',
  'nan-string',
  'wrong-root-type',
  'deep-nesting',
  'long-string',
  'proto-keys',
  'duplicate-key',
  'wrong-device',
  'truncated-json',
  'random-bytes',
  'invalid-utf8',
  'empty',
  'oversized',
] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** Relative weights: mostly broken documents, enough valid ones to check what gets stored. */
const WEIGHTS: Record<Mutation, number> = {
  valid: 14,
  'extra-fields': 5,
  'field-removed': 9,
  'field-changed': 12,
  'huge-number': 7,
  'nan-string': 6,
  'wrong-root-type': 3,
  'deep-nesting': 3,
  'long-string': 5,
  'proto-keys': 7,
  'duplicate-key': 4,
  'wrong-device': 4,
  'truncated-json': 8,
  'random-bytes': 6,
  'invalid-utf8': 3,
  empty: 1,
  oversized: 2,
};

/**
 * What the control plane must do with a payload: `accepted` (handed to its
 * handler: stored, answered), `refused` (dropped by the dispatcher with a
 * logged reason), `ignored` (an empty payload clears a retained topic:
 * nothing to do) or `oversize` (dropped by the broker, acknowledged).
 */
export type Outcome = 'accepted' | 'refused' | 'ignored' | 'oversize';

export interface Judgement {
  outcome: Outcome;
  /** the decoded document when accepted */
  value?: unknown;
}

/** The contract's verdict on `payload` published by `deviceId` on its `kind` topic. */
export function judgePayload(kind: FuzzKind, deviceId: string, payload: Buffer, limits: MaxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES): Judgement {
  const limit = limits[kind] ?? limits.default;
  if (payload.length > limit) return { outcome: 'oversize' };
  if (payload.length === 0) return { outcome: 'ignored' };
  const decoded = decodeJson(SCHEMAS[kind], payload);
  if (!decoded.ok) return { outcome: 'refused' };
  const value = decoded.value as unknown;
  if (typeof value === 'object' && value !== null && 'deviceId' in value && value.deviceId !== deviceId) return { outcome: 'refused' };
  return { outcome: 'accepted', value };
}

export interface FuzzCase {
  index: number;
  kind: FuzzKind;
  mutation: Mutation;
  /** the device whose topic it is published on */
  deviceId: string;
  payload: Buffer;
  expected: Outcome;
  /** `${deviceId}/${seq}` of an accepted telemetry window or event */
  key?: string;
}

export interface PayloadFuzzerOptions {
  seed: number;
  /** the device this fuzzer publishes as */
  deviceId: string;
  /** kinds to draw from (a claimant may publish only provision/request) */
  kinds: readonly FuzzKind[];
  /** the site's real claim token, so some claims are valid */
  claimToken?: string;
  limits?: MaxPayloadBytes;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const RAW = (i: number) => `@@raw:${i}@@`;

export class PayloadFuzzer {
  private readonly rng: Rng;
  private readonly limits: MaxPayloadBytes;
  /** Payloads stay under the broker's socket-level cap: a packet over it closes the connection (the cutter tests that on its own). */
  private readonly maxBytes: number;
  private readonly seqs = { telemetry: 0, events: 0 };
  private index = 0;

  constructor(private readonly opts: PayloadFuzzerOptions) {
    this.rng = createRng(opts.seed >>> 0);
    this.limits = opts.limits ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.maxBytes = new PayloadLimits(this.limits).maxPacketBytes - 1024;
  }

  next(): FuzzCase {
    const r = this.rng;
    const kind = r.pick(this.opts.kinds);
    const mutation = pickWeighted(r, WEIGHTS);
    const doc = this.validDocument(kind);
    const mutated = this.mutate(kind, doc, mutation);
    const payload = mutated.length > this.maxBytes ? mutated.subarray(0, this.maxBytes) : mutated;
    const j = judgePayload(kind, this.opts.deviceId, payload, this.limits);
    const c: FuzzCase = { index: this.index++, kind, mutation, deviceId: this.opts.deviceId, payload, expected: j.outcome };
    if (j.outcome === 'accepted' && (kind === 'telemetry' || kind === 'events')) c.key = `${this.opts.deviceId}/${(j.value as { seq: number }).seq}`;
    return c;
  }

  // ---- valid documents, as an agent makes them ----

  private validDocument(kind: FuzzKind): { [k: string]: Json } {
    const r = this.rng;
    const deviceId = this.opts.deviceId;
    const now = 1_700_000_000_000 + r.int(0, 1_000_000_000);
    const ref = { name: 'fuzz-model', version: `1.${r.int(0, 9)}.0`, sha256: hex(r, 64) };
    switch (kind) {
      case 'telemetry': {
        // Mostly the next seq; now and then a jump ahead or one back, as outboxes replay.
        const seq = r.chance(0.9) ? this.seqs.telemetry++ : r.chance(0.5) ? (this.seqs.telemetry += r.int(2, 50)) : r.int(0, Math.max(0, this.seqs.telemetry));
        const cameras = Array.from({ length: r.int(0, 3) }, (_, c) => {
          const confidence = emptyHistogram('confidence.v1');
          const latency = emptyHistogram(LATENCY_SPEC);
          const counts: { [k: string]: Json } = {};
          const frames = r.int(0, 60);
          for (let f = 0; f < frames; f++) {
            const label = r.pick(['cat', 'dog', 'empty']);
            counts[label] = ((counts[label] as number | undefined) ?? 0) + 1;
            observe(confidence, r.next());
            observe(latency, r.range(1, 80));
          }
          return {
            cameraId: `cam-${c}`,
            framesReceived: frames,
            framesInferred: frames,
            framesDropped: 0,
            inferenceErrors: 0,
            classCounts: counts,
            confidence: { spec: confidence.spec, counts: confidence.counts, sum: confidence.sum },
            latencyMs: { spec: latency.spec, counts: latency.counts, sum: latency.sum },
          };
        });
        return { deviceId, seq, windowStart: now - 10_000, windowEnd: now, model: r.chance(0.8) ? ref : null, cameras };
      }
      case 'events': {
        const seq = this.seqs.events++;
        return {
          deviceId,
          seq,
          eventId: `ev-${seq}`,
          kind: r.pick(['new', 'update', 'end']),
          cameraId: 'cam-0',
          label: r.pick(['cat', 'dog']),
          topConfidence: Math.round(r.next() * 1000) / 1000,
          startedAt: now - 2000,
          at: now,
        };
      }
      case 'status':
        return { deviceId, state: r.pick(['online', 'offline']), agentVersion: '0.1.0', since: now };
      case 'reported':
        return {
          deviceId,
          agentVersion: '0.1.0',
          at: now,
          acceptedGeneration: r.int(0, 10),
          active: r.chance(0.7) ? ref : null,
          deployment: { phase: r.pick(['idle', 'downloading', 'active', 'failed']), generation: r.int(0, 10), target: ref, at: now },
          cameras: [{ cameraId: 'cam-0', state: 'online', framesPerSecond: 5, restarts: 0 }],
        };
      case 'artifact/request':
        return { requestId: `rq-${r.int(0, 1e9)}`, sha256: hex(r, 64), offset: r.int(0, 10) * 65_536, length: r.int(1, 1024 * 1024) };
      case 'metadata/request':
        return { requestId: `mq-${r.int(0, 1e9)}`, name: r.pick(['root.json', '1.root.json', '2.root.json', 'timestamp.json', 'snapshot.json', 'targets.json']) };
      case 'provision/request':
        return {
          requestId: `pq-${r.int(0, 1e9)}`,
          deviceId,
          claimToken: this.opts.claimToken && r.chance(0.7) ? this.opts.claimToken : hex(r, r.int(16, 64)),
          // 32 seeded bytes: an X25519 public key the answer is sealed to (any 32 bytes but a handful of low-order points is one).
          publicKey: Buffer.from(Array.from({ length: 32 }, () => r.int(0, 255))).toString('base64url'),
          agentVersion: '0.1.0',
        };
    }
  }

  // ---- mutations ----

  private mutate(kind: FuzzKind, doc: { [k: string]: Json }, m: Mutation): Buffer {
    const r = this.rng;
    const raws: string[] = [];
    const raw = (text: string): string => {
      raws.push(text);
      return RAW(raws.length - 1);
    };
    const encode = (v: Json): Buffer => {
      let text = JSON.stringify(v);
      raws.forEach((t, i) => (text = text.replace(`"${RAW(i)}"`, () => t)));
      return Buffer.from(text, 'utf8');
    };
    switch (m) {
      case 'valid':
        return encode(doc);
      case 'extra-fields': {
        const target = pickObject(r, doc);
        target[`x-${r.int(0, 999)}`] = randomValue(r, 2);
        return encode(doc);
      }
      case 'field-removed': {
        const [parent, key] = pickSlot(r, doc);
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key as string];
        return encode(doc);
      }
      case 'field-changed': {
        const [parent, key] = pickSlot(r, doc);
        setSlot(parent, key, randomValue(r, 3));
        return encode(doc);
      }
      case 'huge-number': {
        const [parent, key] = pickSlot(r, doc, (v) => typeof v === 'number');
        const text = r.pick(['1e400', '-1e400', '1e308', '-1e308', '9007199254740993', '123456789012345678901234567890', '-0', '0.1', '-1', '4294967296', '1e-400', '2.5']);
        setSlot(parent, key, raw(text));
        return encode(doc);
      }
      case 'nan-string': {
        const [parent, key] = pickSlot(r, doc, (v) => typeof v === 'number');
        setSlot(parent, key, r.pick(['NaN', 'Infinity', '-Infinity', '1e309', '0x1F', '', ' 12 ', '12abc', 'null', '-0', '1_000']));
        return encode(doc);
      }
      case 'wrong-root-type':
        return Buffer.from(r.pick(['[]', '[1,2,3]', '42', '"telemetry"', 'null', 'true', `[${JSON.stringify(doc)}]`, '{}']), 'utf8');
      case 'deep-nesting': {
        const [parent, key] = pickSlot(r, doc);
        const depth = r.pick([16, 256, 4096, 50_000]);
        const nested = r.chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
        setSlot(parent, key, raw(nested));
        return encode(doc);
      }
      case 'long-string': {
        const [parent, key] = pickSlot(r, doc, (v) => typeof v === 'string');
        const len = r.pick([65, 257, 1001, 4097, 20_000]);
        const unit = r.pick(['x', 'é', '\u{1F408}', '\ud800', '\u0000', '"\\']);
        setSlot(parent, key, unit.repeat(Math.ceil(len / unit.length)).slice(0, len));
        return encode(doc);
      }
      case 'proto-keys': {
        const target = pickObject(r, doc);
        const key = r.pick(['__proto__', 'constructor', 'prototype']);
        const value: Json = r.pick<Json>([{ polluted: true, deviceId: 'evil-device', seq: 1 }, 'polluted', 1, null, { toString: 'x', valueOf: 1 }]);
        // An own property named __proto__, as JSON.parse makes one: JSON.stringify writes it out.
        Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
        return encode(doc);
      }
      case 'duplicate-key': {
        const keys = Object.keys(doc);
        const key = r.pick(keys.length > 0 ? keys : ['x']);
        const text = JSON.stringify(doc);
        const dup = `${JSON.stringify(key)}:${JSON.stringify(randomValue(r, 1))}`;
        // Before the original (the original wins) or after it (the duplicate wins).
        return Buffer.from(r.chance(0.5) ? `{${dup},${text.slice(1)}` : `${text.slice(0, -1)},${dup}}`, 'utf8');
      }
      case 'wrong-device':
        if ('deviceId' in doc) doc['deviceId'] = r.pick(['fuzz-other', 'a', `${this.opts.deviceId}x`, '-bad', 'has space', '../etc', '']);
        else doc['requestId'] = '';
        return encode(doc);
      case 'truncated-json': {
        const full = encode(doc);
        return full.subarray(0, r.int(0, Math.max(0, full.length - 1)));
      }
      case 'random-bytes': {
        const n = r.int(1, 2048);
        const b = Buffer.alloc(n);
        for (let i = 0; i < n; i++) b[i] = r.int(0, 255);
        return b;
      }
      case 'invalid-utf8': {
        const full = encode(doc);
        for (let k = r.int(1, 4); k > 0 && full.length > 0; k--) full[r.int(0, full.length - 1)] = r.pick([0xff, 0xfe, 0xc3, 0x80, 0xed]);
        return full;
      }
      case 'empty':
        return Buffer.alloc(0);
      case 'oversized': {
        const limit = this.limits[kind] ?? this.limits.default;
        const base = encode(doc);
        doc['padding'] = 'p'.repeat(Math.max(0, limit - base.length) + r.int(1, 4096));
        return encode(doc);
      }
    }
  }
}

function pickWeighted<K extends string>(r: Rng, weights: Record<K, number>): K {
  const entries = Object.entries(weights) as [K, number][];
  let x = r.next() * entries.reduce((s, [, w]) => s + w, 0);
  for (const [k, w] of entries) {
    x -= w;
    if (x < 0) return k;
  }
  return (entries.at(-1) as [K, number])[0];
}

function hex(r: Rng, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += '0123456789abcdef'[r.int(0, 15)];
  return s;
}

function randomValue(r: Rng, depth: number): Json {
  switch (r.int(0, depth > 0 ? 8 : 6)) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([0, -1, 1.5, 2 ** 31, 2 ** 53, -(2 ** 53), 1e21, Number.MAX_VALUE, Number.MIN_VALUE]);
    case 3:
      return r.int(-1000, 1000);
    case 4:
      return r.pick(['', 'x', 'NaN', '0', 'null', '\u0000', 'online', 'active', 'latency-ms.v2', 'confidence.v1']);
    case 5:
      return 'y'.repeat(r.int(0, 100));
    case 6:
      return [];
    case 7:
      return Array.from({ length: r.int(0, 4) }, () => randomValue(r, depth - 1));
    default:
      return Object.fromEntries(Array.from({ length: r.int(0, 3) }, (_, i) => [`k${i}`, randomValue(r, depth - 1)]));
  }
}

type Slot = [parent: { [k: string]: Json } | Json[], key: string | number];

/** Every (container, key) in the document, optionally only those holding a value that passes `filter`. */
function slots(doc: Json, filter?: (v: Json) => boolean, out: Slot[] = []): Slot[] {
  if (Array.isArray(doc)) {
    doc.forEach((v, i) => {
      if (!filter || filter(v)) out.push([doc, i]);
      slots(v, filter, out);
    });
  } else if (doc !== null && typeof doc === 'object') {
    for (const [k, v] of Object.entries(doc)) {
      if (!filter || filter(v)) out.push([doc, k]);
      slots(v, filter, out);
    }
  }
  return out;
}

/**
 * A slot to mutate, mostly a named field (histogram bins would otherwise be
 * most of a window's slots); the document's own top level when nothing matches.
 */
function pickSlot(r: Rng, doc: { [k: string]: Json }, filter?: (v: Json) => boolean): Slot {
  const all = slots(doc, filter);
  const named = all.filter(([parent]) => !Array.isArray(parent));
  if (named.length > 0 && r.chance(0.75)) return r.pick(named);
  if (all.length > 0) return r.pick(all);
  return [doc, r.pick(Object.keys(doc).length > 0 ? Object.keys(doc) : ['x'])];
}

function setSlot(parent: Slot[0], key: Slot[1], value: Json): void {
  if (Array.isArray(parent)) parent[key as number] = value;
  else parent[key as string] = value;
}

function pickObject(r: Rng, doc: { [k: string]: Json }): { [k: string]: Json } {
  const objects: { [k: string]: Json }[] = [doc];
  const walk = (v: Json): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') {
      objects.push(v);
      Object.values(v).forEach(walk);
    }
  };
  Object.values(doc).forEach(walk);
  return r.pick(objects);
}

/** Counts of cases by expected outcome. */
export type OutcomeCounts = Record<Outcome, number>;

export function zeroOutcomes(): OutcomeCounts {
  return { accepted: 0, refused: 0, ignored: 0, oversize: 0 };
}
