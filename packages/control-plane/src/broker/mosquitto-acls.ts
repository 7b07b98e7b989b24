import { claimantUsername, claimantUsernameOf, DEVICE_TOPIC_KINDS, deviceIdSchema, isProvisionTopicKind, TOPIC_PREFIX, type DeviceTopicKind, type TopicDirection } from '@perch/shared';
import { z } from 'zod';

/**
 * What each identity may do on a Mosquitto 2 broker, as dynamic security
 * roles: the same rules `broker-access.ts` applies in the embedded broker.
 *
 * Mosquitto 2.0's dynamic security plugin substitutes neither `%c` nor `%u`
 * in ACL topics (test/mosquitto-acl.test.ts pins this against the real
 * broker: an ACL naming `perch/v1/devices/%c/telemetry` lets no device
 * publish its telemetry). So there is no single pattern role for devices:
 * every device gets a role of its own that names its topics literally. The
 * other way, a `password_file` plus an `acl_file` of `pattern` lines, would
 * need the broker's filesystem and a SIGHUP for each change, and its pattern
 * lines apply to every user alike, so claimants could not be held to fewer
 * topics than devices.
 */

export const dynsecAclTypeSchema = z.enum([
  'publishClientSend',
  'publishClientReceive',
  'subscribeLiteral',
  'subscribePattern',
  'unsubscribeLiteral',
  'unsubscribePattern',
]);
export type DynsecAclType = z.infer<typeof dynsecAclTypeSchema>;

export const dynsecAclSchema = z.object({
  acltype: dynsecAclTypeSchema,
  topic: z.string().min(1),
  allow: z.boolean(),
  priority: z.number().int().optional(),
});
export type DynsecAcl = z.infer<typeof dynsecAclSchema>;

/**
 * Deny by default, receiving included: a message reaches a client only if a
 * role of its own lets it receive that topic, so a session somebody else
 * opened under a borrowed client id carries nothing it was not granted.
 */
export const DEFAULT_ACL_ACCESS = [
  { acltype: 'publishClientSend', allow: false },
  { acltype: 'publishClientReceive', allow: false },
  { acltype: 'subscribe', allow: false },
  { acltype: 'unsubscribe', allow: true },
] as const;

/**
 * Dots cannot occur in a device id, so no device can ever be given the
 * control plane's or a claim token's username.
 */
export const CONTROL_PLANE_USERNAME = 'perch.control-plane';
export const CONTROL_PLANE_ROLE = 'perch.control-plane';
export const CLAIMANT_ROLE = 'perch.claimant';

export function deviceRoleName(deviceId: string): string {
  return `perch.device.${deviceIdSchema.parse(deviceId)}`;
}

/**
 * A claim token's broker username (and, for a token bound to a device, its
 * role's name), from the token's SHA-256 in hex: the rule is the contract's
 * (`claimantUsernameOf` in @perch/shared), since the box computes it too.
 */
export const claimTokenUsername = claimantUsernameOf;
export const claimTokenUsernameFor = claimantUsername;

function topicOf(device: string, kind: string): string {
  return `${TOPIC_PREFIX}/devices/${device}/${kind}`;
}

const DEVICE_KINDS = (Object.keys(DEVICE_TOPIC_KINDS) as DeviceTopicKind[]).filter((k) => !isProvisionTopicKind(k));
const PROVISION_KINDS = (Object.keys(DEVICE_TOPIC_KINDS) as DeviceTopicKind[]).filter((k) => isProvisionTopicKind(k));

/** Grants one device's own topics by direction; literal topics only, so wildcard subscriptions are refused. */
function directedAcls(device: string, kinds: DeviceTopicKind[]): DynsecAcl[] {
  const acls: DynsecAcl[] = [];
  for (const kind of kinds) {
    const topic = topicOf(device, kind);
    const direction: TopicDirection = DEVICE_TOPIC_KINDS[kind];
    if (direction === 'from-device') acls.push({ acltype: 'publishClientSend', topic, allow: true });
    else acls.push({ acltype: 'subscribeLiteral', topic, allow: true }, { acltype: 'publishClientReceive', topic, allow: true });
  }
  return acls;
}

/** A device publishes its own from-device topics and subscribes its own to-device ones; provisioning is a claimant's. */
export function deviceAcls(deviceId: string): DynsecAcl[] {
  return directedAcls(deviceIdSchema.parse(deviceId), DEVICE_KINDS);
}

/** A claimant bound to one device id: that device's provision topics and nothing else. */
export function boundClaimantAcls(deviceId: string): DynsecAcl[] {
  return directedAcls(deviceIdSchema.parse(deviceId), PROVISION_KINDS);
}

/**
 * A claimant of a shared claim token, which any device id may use. Without
 * `%c` the broker cannot hold it to its own device's topics: it may publish
 * any device's provision request and subscribe any one device's provision
 * response by its exact topic. The wildcard filter itself is denied (at a
 * higher priority), so one claimant cannot collect every answer; still, a
 * response must not carry anything another claimant could use (see
 * docs/deploy-external-broker.md).
 */
export function sharedClaimantAcls(): DynsecAcl[] {
  const request = topicOf('+', 'provision/request');
  const response = topicOf('+', 'provision/response');
  return [
    { acltype: 'publishClientSend', topic: request, allow: true },
    { acltype: 'subscribeLiteral', topic: response, allow: false, priority: 10 },
    { acltype: 'subscribePattern', topic: response, allow: true },
    { acltype: 'publishClientReceive', topic: response, allow: true },
  ];
}

/** Every contract version, so one control plane can serve two during a migration. */
const ALL_PERCH_TOPICS = 'perch/#';

/** The control plane: every Perch topic (shared subscriptions included), the dynamic security API, and broker metrics to read. */
export function controlPlaneAcls(): DynsecAcl[] {
  const acls: DynsecAcl[] = [];
  for (const topic of [ALL_PERCH_TOPICS, '$CONTROL/dynamic-security/#']) {
    acls.push(
      { acltype: 'publishClientSend', topic, allow: true },
      { acltype: 'publishClientReceive', topic, allow: true },
      { acltype: 'subscribePattern', topic, allow: true },
    );
  }
  // Mosquitto 2.0 checks a shared subscription's filter with its `$share/<group>/` prefix.
  acls.push({ acltype: 'subscribePattern', topic: `$share/+/${ALL_PERCH_TOPICS}`, allow: true });
  acls.push({ acltype: 'publishClientReceive', topic: '$SYS/#', allow: true }, { acltype: 'subscribePattern', topic: '$SYS/#', allow: true });
  return acls;
}
