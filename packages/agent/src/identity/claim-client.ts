import { randomUUID } from 'node:crypto';
import { connectAsync, type MqttClient } from 'mqtt';
import {
  claimantUsername,
  decodeJson,
  deviceTopic,
  encodeJson,
  openSecret,
  provisionResponseSchema,
  provisionSealingContext,
  sealingKeyPair,
  type ProvisionRefusal,
  type ProvisionRequest,
} from '@perch/shared';
import { AGENT_VERSION } from '../agent-version.js';
import type { BrokerTls } from '../config/agent-config.js';
import type { Logger } from '../log/logger.js';

export interface ClaimOptions {
  url: string;
  deviceId: string;
  claimToken: string;
  /** as the agent's connection uses it */
  tls?: BrokerTls | undefined;
  connectTimeoutMs: number;
  /** how long the control plane has to answer once the request is out */
  responseTimeoutMs: number;
}

/** The claim did not get an answer: no broker, the claim token refused at connect, no response in time. Worth trying again later. */
export class ClaimUnanswered extends Error {
  override readonly name = 'ClaimUnanswered';
  constructor(
    message: string,
    /** the broker refused the login itself: a token it does not know, or this device id connected now */
    readonly refusedAtConnect = false,
  ) {
    super(message);
  }
}

/** CONNACK codes of a refused login: 4/5 in MQTT 3.1.1, 134/135 in MQTT 5. */
const REFUSED_LOGIN = new Set([4, 5, 134, 135]);

/** The control plane's answer, the password opened. */
export type ClaimAnswer =
  | { status: 'issued'; username: string; password: string; issuedAt: number }
  | { status: 'refused'; code: ProvisionRefusal; reason: string };

/**
 * One claim on a connection of its own, as a claimant (client id = device
 * id, username = `claimantUsername(token)`, password = the claim token: the
 * one form both the embedded and an external broker take), which may only ask on its
 * `provision/request` and hear on its `provision/response`. No will and no
 * status: a claimant may not publish them, and the device is not online
 * until it connects with its own credentials. The password comes sealed to
 * a key pair made for this claim, whose private half never leaves memory.
 */
export async function claimCredentials(opts: ClaimOptions, log: Logger, signal: AbortSignal): Promise<ClaimAnswer> {
  let client: MqttClient;
  try {
    client = await connectAsync(
      opts.url,
      { clientId: opts.deviceId, username: claimantUsername(opts.claimToken), password: opts.claimToken, clean: true, reconnectPeriod: 0, connectTimeout: opts.connectTimeoutMs, ...opts.tls },
      false,
    );
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new ClaimUnanswered(`could not connect as a claimant: ${(err as Error).message}`, typeof code === 'number' && REFUSED_LOGIN.has(code));
  }
  const onAbort = () => void client.endAsync(true);
  signal.addEventListener('abort', onAbort, { once: true });
  // Stopped while connecting: the listener came too late to hear it.
  if (signal.aborted) onAbort();
  try {
    const requestId = randomUUID();
    const keys = sealingKeyPair();
    const responseTopic = deviceTopic(opts.deviceId, 'provision/response');
    const answered = new Promise<ClaimAnswer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new ClaimUnanswered(`no answer to the claim within ${opts.responseTimeoutMs} ms`)), opts.responseTimeoutMs);
      client.on('close', () => {
        clearTimeout(timer);
        reject(new ClaimUnanswered('the claimant connection closed before an answer'));
      });
      client.on('message', (topic, payload) => {
        if (topic !== responseTopic) return;
        const decoded = decodeJson(provisionResponseSchema, payload);
        if (!decoded.ok) return log.warn({ reason: decoded.error }, 'invalid provision response; dropped');
        const a = decoded.value;
        if (a.requestId !== requestId || a.deviceId !== opts.deviceId) return;
        clearTimeout(timer);
        if (a.status === 'refused') return resolve({ status: 'refused', code: a.code, reason: a.reason });
        try {
          const password = openSecret(a.password, keys.privateKey, provisionSealingContext(opts.deviceId, requestId));
          resolve({ status: 'issued', username: a.username, password, issuedAt: a.issuedAt });
        } catch (err) {
          reject(new ClaimUnanswered(`the answer's password: ${(err as Error).message}`));
        }
      });
    });
    // Rejections before the await below must not count as unhandled.
    answered.catch(() => undefined);
    const grants = await client.subscribeAsync(responseTopic, { qos: 1 });
    if (grants.some((g) => g.qos === 128)) throw new ClaimUnanswered('the broker refused the subscription to provision/response');
    const request: ProvisionRequest = { requestId, deviceId: opts.deviceId, claimToken: opts.claimToken, publicKey: keys.publicKey, agentVersion: AGENT_VERSION };
    await client.publishAsync(deviceTopic(opts.deviceId, 'provision/request'), encodeJson(request), { qos: 1 });
    return await answered;
  } catch (err) {
    if (err instanceof ClaimUnanswered) throw err;
    throw new ClaimUnanswered(`claim failed: ${(err as Error).message}`);
  } finally {
    signal.removeEventListener('abort', onAbort);
    await client.endAsync(true);
  }
}
