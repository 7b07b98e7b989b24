import { CLAIMANT_USERNAME_PREFIX, deviceIdSchema } from '@perch/shared';
import {
  boundClaimantAcls,
  CLAIMANT_ROLE,
  claimTokenUsername,
  claimTokenUsernameFor,
  deviceAcls,
  deviceRoleName,
  sharedClaimantAcls,
  type DynsecAcl,
} from './mosquitto-acls.js';
import { DynsecCommandError, type DynsecAnswer, type DynsecClient } from './mosquitto-dynsec.js';

/**
 * What the control plane tells an external broker when it issues or revokes
 * credentials. The embedded broker asks the control plane at every CONNECT
 * instead; an external one has to be told beforehand.
 */
export interface ExternalBrokerAccess {
  /**
   * Lets `deviceId` connect with `password` (username = client id = device
   * id) to its own topics. For a device already there it replaces the
   * password, which closes the device's connection: it comes back with the
   * new one. Safe to repeat.
   */
  addDevice(deviceId: string, password: string): Promise<void>;
  /** The device can no longer connect; a connection it has is closed at once. Safe to repeat. */
  revokeDevice(deviceId: string): Promise<void>;
  /**
   * Makes a claim token a broker credential: username
   * `claimTokenUsernameFor(token)`, password the token, client id the
   * claiming device's id. With `deviceId`, only that client id and that
   * device's provision topics; without, any device's (see
   * sharedClaimantAcls for what that leaves open). Safe to repeat.
   */
  addClaimToken(token: string, opts?: { deviceId?: string; name?: string }): Promise<void>;
  /** By the token's SHA-256 (hex), which is all the control plane keeps; closes claimants using it. Safe to repeat. */
  removeClaimToken(tokenSha256: string): Promise<void>;
}

function sameAcl(a: DynsecAcl, b: DynsecAcl): boolean {
  return a.acltype === b.acltype && a.topic === b.topic && a.allow === b.allow && (a.priority ?? 0) === (b.priority ?? 0);
}

/** A batch's answer as the error the broker refused it with, or null when it was done. */
function refusal(answer: DynsecAnswer | undefined, subject: string): DynsecCommandError | null {
  if (answer === undefined) throw new Error(`dynamic security: no answer about ${subject}`);
  return answer.error === undefined ? null : new DynsecCommandError(answer.command, answer.error, subject);
}

function throwUnless(err: DynsecCommandError | null, tolerated: (e: DynsecCommandError) => boolean): void {
  if (err !== null && !tolerated(err)) throw err;
}

/** ExternalBrokerAccess for Mosquitto 2 with its dynamic security plugin. */
export class MosquittoBrokerAccess implements ExternalBrokerAccess {
  constructor(private readonly dynsec: DynsecClient) {}

  async addDevice(deviceId: string, password: string): Promise<void> {
    deviceIdSchema.parse(deviceId);
    const rolename = deviceRoleName(deviceId);
    // The client is bound to its own id: no device can take over another's session.
    await this.upsertClient({ username: deviceId, password, clientid: deviceId, rolename, acls: deviceAcls(deviceId), textname: `Perch device ${deviceId}` });
  }

  async revokeDevice(deviceId: string): Promise<void> {
    deviceIdSchema.parse(deviceId);
    await this.deleteClientAndRole(deviceId, deviceRoleName(deviceId));
  }

  async addClaimToken(token: string, opts: { deviceId?: string; name?: string } = {}): Promise<void> {
    const username = claimTokenUsernameFor(token);
    const textname = `Perch claim token${opts.name === undefined ? '' : ` ${opts.name}`}`;
    if (opts.deviceId === undefined) {
      await this.upsertClient({ username, password: token, rolename: CLAIMANT_ROLE, acls: sharedClaimantAcls(), textname });
    } else {
      // A role of its own, named like the client: usernames and role names are separate namespaces.
      await this.upsertClient({ username, password: token, clientid: deviceIdSchema.parse(opts.deviceId), rolename: username, acls: boundClaimantAcls(opts.deviceId), textname });
    }
  }

  async removeClaimToken(tokenSha256: string): Promise<void> {
    await this.removeClaimUsername(claimTokenUsername(tokenSha256));
  }

  /** By the broker's username, for a token the control plane no longer knows (`mosquitto-reconcile.ts`). */
  async removeClaimUsername(username: string): Promise<void> {
    if (!username.startsWith(CLAIMANT_USERNAME_PREFIX)) throw new Error(`${username} is not a claim token's username`);
    await this.deleteClientAndRole(username, username);
  }

  /**
   * Role first, then the client with the role: one message for a new
   * identity. An identity already there gets the password, client id and
   * role it should have, and its role's ACLs are brought up to date (they
   * change when topic kinds do).
   */
  private async upsertClient(c: { username: string; password: string; clientid?: string; rolename: string; acls: DynsecAcl[]; textname: string }): Promise<void> {
    const [role, client] = await this.dynsec.execute([
      { command: 'createRole', rolename: c.rolename, acls: c.acls },
      {
        command: 'createClient',
        username: c.username,
        password: c.password,
        textname: c.textname,
        roles: [{ rolename: c.rolename }],
        ...(c.clientid === undefined ? {} : { clientid: c.clientid }),
      },
    ]);
    const roleRefused = refusal(role, c.rolename);
    throwUnless(roleRefused, (e) => e.alreadyExists);
    if (roleRefused !== null) await this.syncRoleAcls(c.rolename, c.acls);
    const clientRefused = refusal(client, c.username);
    throwUnless(clientRefused, (e) => e.alreadyExists);
    if (clientRefused === null) return;

    const info = await this.dynsec.getClient(c.username);
    const answers = await this.dynsec.execute([
      { command: 'setClientPassword', username: c.username, password: c.password },
      c.clientid === undefined ? { command: 'setClientId', username: c.username } : { command: 'setClientId', username: c.username, clientid: c.clientid },
      // Adding a role a client already has is an "Internal error" in 2.0, so only when missing.
      ...(info?.roles.some((r) => r.rolename === c.rolename) ? [] : [{ command: 'addClientRole' as const, username: c.username, rolename: c.rolename }]),
      { command: 'enableClient', username: c.username },
    ]);
    for (const a of answers) throwUnless(refusal(a, c.username), () => false);
  }

  private async syncRoleAcls(rolename: string, want: DynsecAcl[]): Promise<void> {
    const role = await this.dynsec.getRole(rolename);
    const have = role?.acls ?? [];
    const stale = have.filter((h) => !want.some((w) => sameAcl(h, w)));
    const missing = want.filter((w) => !have.some((h) => sameAcl(h, w)));
    // Removal goes by type and topic, so a changed allow or priority is removed, then added anew.
    const answers = await this.dynsec.execute([
      ...stale.map((a) => ({ command: 'removeRoleACL' as const, rolename, acltype: a.acltype, topic: a.topic })),
      ...missing.map((a) => ({ command: 'addRoleACL' as const, rolename, ...a })),
    ]);
    for (const a of answers) throwUnless(refusal(a, rolename), () => false);
  }

  /** The client first: a role still held by a client could not go. A claim token's own role exists only when it is bound to a device. */
  private async deleteClientAndRole(username: string, rolename: string): Promise<void> {
    const [client, role] = await this.dynsec.execute([
      { command: 'deleteClient', username },
      { command: 'deleteRole', rolename },
    ]);
    throwUnless(refusal(client, username), (e) => e.notFound);
    throwUnless(refusal(role, rolename), (e) => e.notFound);
  }
}
