import { randomBytes } from 'node:crypto';
import { formatZodError } from '@perch/shared';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { z } from 'zod';
import { dynsecAclSchema, type DynsecAcl, type DynsecAclType } from './mosquitto-acls.js';

/**
 * A client of Mosquitto 2's dynamic security API: commands published as JSON
 * on `$CONTROL/dynamic-security/v1`, answers on `.../v1/response`. Every
 * admin client subscribed gets every answer, other control planes' too, so
 * each command carries a `correlationData` of this client's own, which the
 * plugin echoes, and answers are matched by it, never by order.
 */

export const DYNSEC_REQUEST_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = '$CONTROL/dynamic-security/v1/response';

type RoleRef = { rolename: string; priority?: number };
type Paging = { count?: number; offset?: number };

export type DynsecCommand =
  | { command: 'createClient'; username: string; password?: string; clientid?: string; textname?: string; roles?: RoleRef[] }
  | { command: 'deleteClient' | 'enableClient' | 'disableClient' | 'getClient'; username: string }
  | { command: 'setClientPassword'; username: string; password: string }
  | { command: 'setClientId'; username: string; clientid?: string }
  | { command: 'addClientRole'; username: string; rolename: string; priority?: number }
  | { command: 'removeClientRole'; username: string; rolename: string }
  | ({ command: 'listClients' | 'listRoles' } & Paging)
  | { command: 'createRole'; rolename: string; textname?: string; acls?: DynsecAcl[] }
  | { command: 'deleteRole' | 'getRole'; rolename: string }
  | ({ command: 'addRoleACL'; rolename: string } & DynsecAcl)
  | { command: 'removeRoleACL'; rolename: string; acltype: DynsecAclType; topic: string };

const answerSchema = z.object({
  command: z.string(),
  error: z.string().optional(),
  data: z.unknown().optional(),
  correlationData: z.string().optional(),
});
const responseMessageSchema = z.object({ responses: z.array(answerSchema) });

const roleRefSchema = z.object({ rolename: z.string(), priority: z.number().optional() });

export const dynsecClientInfoSchema = z.object({
  username: z.string(),
  clientid: z.string().optional(),
  textname: z.string().optional(),
  disabled: z.boolean().optional(),
  roles: z.array(roleRefSchema),
  groups: z.array(z.object({ groupname: z.string(), priority: z.number().optional() })),
});
export type DynsecClientInfo = z.infer<typeof dynsecClientInfoSchema>;

export const dynsecRoleInfoSchema = z.object({
  rolename: z.string(),
  textname: z.string().optional(),
  acls: z.array(dynsecAclSchema.extend({ priority: z.number().int() })),
});
export type DynsecRoleInfo = z.infer<typeof dynsecRoleInfoSchema>;

const getClientDataSchema = z.object({ client: dynsecClientInfoSchema });
const getRoleDataSchema = z.object({ role: dynsecRoleInfoSchema });
const listClientsDataSchema = z.object({ totalCount: z.number().int(), clients: z.array(z.string()) });
const listRolesDataSchema = z.object({ totalCount: z.number().int(), roles: z.array(z.string()) });

export class DynsecError extends Error {
  constructor(
    readonly command: string,
    message: string,
  ) {
    super(message);
    this.name = 'DynsecError';
  }
}

/** The broker refused a command, with its words (`Client not found`, `Role already exists`, ...). */
export class DynsecCommandError extends DynsecError {
  constructor(
    command: string,
    readonly brokerMessage: string,
    readonly subject: string | undefined,
  ) {
    super(command, `dynamic security ${command}${subject === undefined ? '' : ` ${subject}`} refused: ${brokerMessage}`);
    this.name = 'DynsecCommandError';
  }

  get notFound(): boolean {
    return /not found$/i.test(this.brokerMessage);
  }

  get alreadyExists(): boolean {
    return /already exists$/i.test(this.brokerMessage);
  }
}

export class DynsecTimeoutError extends DynsecError {
  constructor(command: string, timeoutMs: number) {
    super(command, `dynamic security ${command} got no answer in ${timeoutMs} ms (is the plugin loaded, and may this client use ${DYNSEC_REQUEST_TOPIC}?)`);
    this.name = 'DynsecTimeoutError';
  }
}

/** An answer that is not what the API documents. */
export class DynsecResponseError extends DynsecError {
  constructor(command: string, details: string) {
    super(command, `dynamic security ${command}: unexpected answer: ${details}`);
    this.name = 'DynsecResponseError';
  }
}

/** One command's outcome; `error` is the broker's refusal, if any. */
export type DynsecAnswer = { command: string; error?: string; data?: unknown };

interface Pending {
  resolve: (a: DynsecAnswer) => void;
  reject: (err: Error) => void;
}

export interface DynsecClientOptions {
  /** how long a batch of commands may wait for its answer; a guard against a broker that never answers */
  timeoutMs: number;
  /** told about messages on the response topic that are not answers at all */
  onInvalidResponse?: (details: string) => void;
}

const defaults: DynsecClientOptions = { timeoutMs: 10_000 };

function subjectOf(c: DynsecCommand): string | undefined {
  if ('username' in c) return c.username;
  if ('rolename' in c) return c.rolename;
  return undefined;
}

export class DynsecClient {
  private readonly opts: DynsecClientOptions;
  private readonly pending = new Map<string, Pending>();
  /** Ours alone among the admin clients sharing the response topic. */
  private readonly prefix = randomBytes(6).toString('hex');
  private seq = 0;
  private readonly onMessage = (topic: string, payload: Buffer): void => this.handleMessage(topic, payload);

  /** Uses `client` (connected or connecting) for the API; `close()` ends it only if `owned`. */
  constructor(
    private readonly client: MqttClient,
    opts: Partial<DynsecClientOptions> = {},
    private readonly owned = false,
  ) {
    this.opts = { ...defaults, ...opts };
    client.on('message', this.onMessage);
  }

  /** A connection of its own, subscribed and ready. MQTT 5, so a refused publish fails at once instead of timing out. */
  static async connect(url: string, mqttOpts: IClientOptions & { username: string; password: string; clientId: string }, opts: Partial<DynsecClientOptions> = {}): Promise<DynsecClient> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 5, clean: true, reconnectPeriod: 1000, ...mqttOpts });
    const dynsec = new DynsecClient(client, opts, true);
    try {
      await dynsec.start();
    } catch (err) {
      await client.endAsync(true);
      throw err;
    }
    return dynsec;
  }

  /** Subscribes the response topic; mqtt.js renews the subscription after a reconnect. */
  async start(): Promise<void> {
    const granted = await this.client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 });
    const code = granted[0]?.qos;
    if (code === undefined || code >= 0x80) throw new DynsecError('subscribe', `the broker refused the subscription to ${DYNSEC_RESPONSE_TOPIC} (code ${code})`);
  }

  async close(): Promise<void> {
    this.client.off('message', this.onMessage);
    for (const p of this.pending.values()) p.reject(new DynsecError('close', 'dynamic security client closed'));
    this.pending.clear();
    if (this.owned) await this.client.endAsync();
  }

  /**
   * Sends the commands in one message and resolves with each one's answer,
   * in order; a refused command is an answer with `error`, not a rejection.
   * Rejects when the message cannot be sent or the answers do not all come.
   */
  async execute(commands: DynsecCommand[]): Promise<DynsecAnswer[]> {
    if (commands.length === 0) return [];
    const ids = commands.map(() => `${this.prefix}-${++this.seq}`);
    const answers = ids.map((id) => new Promise<DynsecAnswer>((resolve, reject) => this.pending.set(id, { resolve, reject })));
    const first = commands[0]?.command ?? 'command';
    const timer = setTimeout(() => {
      for (const id of ids) this.settle(id)?.reject(new DynsecTimeoutError(first, this.opts.timeoutMs));
    }, this.opts.timeoutMs);
    const body = JSON.stringify({ commands: commands.map((c, i) => ({ ...c, correlationData: ids[i] })) });
    this.client.publishAsync(DYNSEC_REQUEST_TOPIC, body, { qos: 1 }).catch((err: Error) => {
      for (const id of ids) this.settle(id)?.reject(new DynsecError(first, `could not send dynamic security ${first}: ${err.message}`));
    });
    try {
      return await Promise.all(answers);
    } finally {
      clearTimeout(timer);
      // After one rejection the others must not linger.
      for (const id of ids) this.pending.delete(id);
    }
  }

  /** One command; a refusal is thrown as DynsecCommandError. Resolves with the answer's data. */
  async run(command: DynsecCommand): Promise<unknown> {
    const [answer] = await this.execute([command]);
    if (answer === undefined) throw new DynsecResponseError(command.command, 'no answer');
    if (answer.error !== undefined) throw new DynsecCommandError(command.command, answer.error, subjectOf(command));
    return answer.data;
  }

  async createClient(c: Omit<Extract<DynsecCommand, { command: 'createClient' }>, 'command'>): Promise<void> {
    await this.run({ command: 'createClient', ...c });
  }

  /** Closes every connection of this username at once. */
  async deleteClient(username: string): Promise<void> {
    await this.run({ command: 'deleteClient', username });
  }

  /** Closes every connection of this username and refuses new ones until enabled. */
  async disableClient(username: string): Promise<void> {
    await this.run({ command: 'disableClient', username });
  }

  async enableClient(username: string): Promise<void> {
    await this.run({ command: 'enableClient', username });
  }

  /** Closes the username's connections: they must come back with the new password. */
  async setClientPassword(username: string, password: string): Promise<void> {
    await this.run({ command: 'setClientPassword', username, password });
  }

  /** Binds the username to one client id (none: any). */
  async setClientId(username: string, clientid?: string): Promise<void> {
    await this.run(clientid === undefined ? { command: 'setClientId', username } : { command: 'setClientId', username, clientid });
  }

  async addClientRole(username: string, rolename: string, priority?: number): Promise<void> {
    await this.run(priority === undefined ? { command: 'addClientRole', username, rolename } : { command: 'addClientRole', username, rolename, priority });
  }

  async removeClientRole(username: string, rolename: string): Promise<void> {
    await this.run({ command: 'removeClientRole', username, rolename });
  }

  /** null when there is no such client. */
  async getClient(username: string): Promise<DynsecClientInfo | null> {
    try {
      return this.parse('getClient', getClientDataSchema, await this.run({ command: 'getClient', username })).client;
    } catch (err) {
      if (err instanceof DynsecCommandError && err.notFound) return null;
      throw err;
    }
  }

  async listClients(paging: Paging = {}): Promise<{ totalCount: number; clients: string[] }> {
    return this.parse('listClients', listClientsDataSchema, await this.run({ command: 'listClients', ...paging }));
  }

  async createRole(rolename: string, acls: DynsecAcl[] = [], textname?: string): Promise<void> {
    await this.run(textname === undefined ? { command: 'createRole', rolename, acls } : { command: 'createRole', rolename, acls, textname });
  }

  async deleteRole(rolename: string): Promise<void> {
    await this.run({ command: 'deleteRole', rolename });
  }

  /** null when there is no such role. */
  async getRole(rolename: string): Promise<DynsecRoleInfo | null> {
    try {
      return this.parse('getRole', getRoleDataSchema, await this.run({ command: 'getRole', rolename })).role;
    } catch (err) {
      if (err instanceof DynsecCommandError && err.notFound) return null;
      throw err;
    }
  }

  async listRoles(paging: Paging = {}): Promise<{ totalCount: number; roles: string[] }> {
    return this.parse('listRoles', listRolesDataSchema, await this.run({ command: 'listRoles', ...paging }));
  }

  async addRoleACL(rolename: string, acl: DynsecAcl): Promise<void> {
    await this.run({ command: 'addRoleACL', rolename, ...acl });
  }

  async removeRoleACL(rolename: string, acltype: DynsecAclType, topic: string): Promise<void> {
    await this.run({ command: 'removeRoleACL', rolename, acltype, topic });
  }

  private parse<T>(command: string, schema: z.ZodType<T>, data: unknown): T {
    const r = schema.safeParse(data);
    if (!r.success) throw new DynsecResponseError(command, formatZodError(r.error));
    return r.data;
  }

  private settle(id: string): Pending | undefined {
    const p = this.pending.get(id);
    this.pending.delete(id);
    return p;
  }

  private handleMessage(topic: string, payload: Buffer): void {
    if (topic !== DYNSEC_RESPONSE_TOPIC) return;
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      this.opts.onInvalidResponse?.(`not JSON: ${(err as Error).message}`);
      return;
    }
    const r = responseMessageSchema.safeParse(json);
    if (!r.success) {
      this.opts.onInvalidResponse?.(formatZodError(r.error));
      return;
    }
    for (const { correlationData, ...answer } of r.data.responses) {
      // Answers to other admin clients, or to commands that timed out, are not ours to settle.
      if (correlationData === undefined) continue;
      this.settle(correlationData)?.resolve(answer);
    }
  }
}
