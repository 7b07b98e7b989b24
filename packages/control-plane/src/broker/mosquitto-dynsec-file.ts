import { pbkdf2Sync, randomBytes } from 'node:crypto';
import {
  CLAIMANT_ROLE,
  CONTROL_PLANE_ROLE,
  CONTROL_PLANE_USERNAME,
  controlPlaneAcls,
  DEFAULT_ACL_ACCESS,
  sharedClaimantAcls,
  type DynsecAcl,
} from './mosquitto-acls.js';

/**
 * The dynamic security plugin's file as Perch starts it: the control plane's
 * client and role, the shared claimants' role, deny by default. Devices and
 * claim tokens are added later over the plugin's MQTT API
 * (`mosquitto-dynsec.ts`), and the broker keeps this file up to date itself.
 */

interface DynsecFileClient {
  username: string;
  textName: string;
  password: string;
  salt: string;
  iterations: number;
  roles: { rolename: string }[];
}

export interface DynsecFile {
  clients: DynsecFileClient[];
  roles: { rolename: string; textName: string; acls: DynsecAcl[] }[];
  groups: never[];
  defaultACLAccess: Record<(typeof DEFAULT_ACL_ACCESS)[number]['acltype'], boolean>;
}

/**
 * As mosquitto_ctrl writes it: PBKDF2-HMAC-SHA512 over a 12-byte salt, 64
 * bytes, both base64. Its 101 iterations are kept: the control plane's
 * password is 256 random bits, which stretching cannot make harder to guess,
 * and the broker pays the iterations at every connect.
 */
export function hashDynsecPassword(password: string, salt: Buffer = randomBytes(12), iterations = 101): { password: string; salt: string; iterations: number } {
  return { password: pbkdf2Sync(password, salt, iterations, 64, 'sha512').toString('base64'), salt: salt.toString('base64'), iterations };
}

export function initialDynsecFile(opts: { controlPlanePassword: string }): DynsecFile {
  return {
    clients: [
      {
        username: CONTROL_PLANE_USERNAME,
        textName: 'Perch control plane',
        ...hashDynsecPassword(opts.controlPlanePassword),
        roles: [{ rolename: CONTROL_PLANE_ROLE }],
      },
    ],
    roles: [
      { rolename: CONTROL_PLANE_ROLE, textName: 'Perch control plane: all Perch topics and the dynamic security API', acls: controlPlaneAcls() },
      { rolename: CLAIMANT_ROLE, textName: 'Perch claimants of shared claim tokens: provision topics only', acls: sharedClaimantAcls() },
    ],
    groups: [],
    defaultACLAccess: Object.fromEntries(DEFAULT_ACL_ACCESS.map((a) => [a.acltype, a.allow])) as DynsecFile['defaultACLAccess'],
  };
}
