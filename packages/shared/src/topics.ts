import { z } from 'zod';

/**
 * The MQTT topic tree. Every topic Perch uses is built and parsed here and
 * nowhere else, so the contract can be versioned by its prefix.
 */
export const TOPIC_PREFIX = 'perch/v1';

/** Device ids end up in topic levels and file names: no wildcards, separators or dots at the start. */
export const deviceIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, '1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit');

/** Per-device topic kinds, with the direction each flows in. */
export const DEVICE_TOPIC_KINDS = {
  /** control plane -> device, retained: the signed desired state */
  desired: 'to-device',
  /** device -> control plane, retained: what the device actually runs */
  reported: 'from-device',
  /** device -> control plane, retained, also the will message: online / offline */
  status: 'from-device',
  /** device -> control plane, QoS 1: one telemetry window */
  telemetry: 'from-device',
  /** device -> control plane, QoS 1: detection events */
  events: 'from-device',
  /** device -> control plane: a request for one artifact chunk */
  'artifact/request': 'from-device',
  /** control plane -> device: one artifact chunk (binary frame) */
  'artifact/chunk': 'to-device',
  /** device -> control plane: a request for one TUF metadata file (tuf-transport.ts) */
  'metadata/request': 'from-device',
  /** control plane -> device: the TUF metadata file asked for, or why not */
  'metadata/response': 'to-device',
  /** claimant -> control plane, QoS 1: a box with a claim token and no credentials asks for them (device-provisioning.ts) */
  'provision/request': 'from-device',
  /** control plane -> claimant, QoS 1: the device's own credentials, or why not */
  'provision/response': 'to-device',
} as const;

export type DeviceTopicKind = keyof typeof DEVICE_TOPIC_KINDS;
export type TopicDirection = (typeof DEVICE_TOPIC_KINDS)[DeviceTopicKind];

/**
 * The kinds a claimant uses, and the only ones it may: a device that has its
 * own credentials never needs them, so broker ACLs keep the two apart.
 */
export const PROVISION_TOPIC_KINDS: readonly DeviceTopicKind[] = ['provision/request', 'provision/response'];

export function isProvisionTopicKind(kind: DeviceTopicKind): boolean {
  return PROVISION_TOPIC_KINDS.includes(kind);
}

const KINDS = Object.keys(DEVICE_TOPIC_KINDS) as DeviceTopicKind[];

export function deviceTopic(deviceId: string, kind: DeviceTopicKind): string {
  deviceIdSchema.parse(deviceId);
  return `${TOPIC_PREFIX}/devices/${deviceId}/${kind}`;
}

/** Subscription filter matching one topic kind of every device. */
export function allDevicesFilter(kind: DeviceTopicKind): string {
  return `${TOPIC_PREFIX}/devices/+/${kind}`;
}

/** Subscription filter matching every topic of one device. */
export function oneDeviceFilter(deviceId: string): string {
  deviceIdSchema.parse(deviceId);
  return `${TOPIC_PREFIX}/devices/${deviceId}/#`;
}

export interface ParsedDeviceTopic {
  deviceId: string;
  kind: DeviceTopicKind;
  direction: TopicDirection;
}

/** Parses a concrete topic; null for anything outside the contract. */
export function parseDeviceTopic(topic: string): ParsedDeviceTopic | null {
  const head = `${TOPIC_PREFIX}/devices/`;
  if (!topic.startsWith(head)) return null;
  const rest = topic.slice(head.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return null;
  const deviceId = rest.slice(0, slash);
  const kind = rest.slice(slash + 1);
  if (!deviceIdSchema.safeParse(deviceId).success) return null;
  if (!(KINDS as string[]).includes(kind)) return null;
  const k = kind as DeviceTopicKind;
  return { deviceId, kind: k, direction: DEVICE_TOPIC_KINDS[k] };
}

/** Rollout ids end up in a topic level: the same character set as device ids. */
export const rolloutIdSchema = deviceIdSchema;

/**
 * control plane -> operators' tools, QoS 1: every state change of one
 * rollout. Outside `devices/`, so no device may publish or subscribe it
 * (the broker's device rules only grant a device's own device topics).
 */
export function rolloutEventsTopic(rolloutId: string): string {
  rolloutIdSchema.parse(rolloutId);
  return `${TOPIC_PREFIX}/rollouts/${rolloutId}/events`;
}

/** Subscription filter matching the events of every rollout. */
export const ALL_ROLLOUT_EVENTS_FILTER = `${TOPIC_PREFIX}/rollouts/+/events`;
