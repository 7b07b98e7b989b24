import { setTimeout as sleep } from 'node:timers/promises';
import { JitteredBackoff } from '../backoff/jittered-backoff.js';
import type { AgentConfig } from '../config/agent-config.js';
import type { Logger } from '../log/logger.js';
import type { MqttConnection } from '../mqtt/connection.js';
import { claimCredentials, ClaimUnanswered } from './claim-client.js';
import { readStoredCredentials, storedCredentialsPath, writeStoredCredentials } from './stored-credentials.js';

export interface DeviceIdentityConfig {
  deviceId: string;
  dataDir: string;
  broker: AgentConfig['broker'];
}

/** Where the connection's credentials came from. */
export type CredentialSource = 'configured' | 'stored' | 'claimed' | 'claiming' | 'none';

const CLAIM_RESPONSE_TIMEOUT_MS = 15_000;

/**
 * Which credentials the agent's one connection logs in with, and getting
 * them when the box has none. A configured password wins (the installer put
 * it there), then credentials stored by an earlier claim, then a claim with
 * the claim token, in the background, until the control plane answers. A
 * refused claim is retried only at the backoff's longest delay: the answer
 * (a revoked device, a used-up token) rarely changes by itself. Stored
 * credentials the broker refuses are never replaced by a new claim: a
 * revoked device must stay out, so the refusal is reported instead.
 */
export class DeviceIdentity {
  private source: CredentialSource = 'none';
  private claimProblem: string | null = null;
  private abort = new AbortController();
  private claiming: Promise<void> | null = null;
  private readonly onRefused = (reason: string) => this.refused(reason);

  constructor(
    private readonly config: DeviceIdentityConfig,
    private readonly connection: MqttConnection,
    private readonly log: Logger,
  ) {}

  get credentialSource(): CredentialSource {
    return this.source;
  }

  /** Why the box cannot log in to the control plane, if it cannot; for /healthz. */
  get problem(): string | null {
    const refused = this.connection.refusedCredentials;
    if (refused !== null) return `the control plane refused this device's ${this.source} credentials (${refused})`;
    return this.claimProblem;
  }

  /** Picks the credentials and starts the connection, or a claim; never waits for the network. */
  async start(): Promise<void> {
    this.abort = new AbortController();
    this.connection.on('refused', this.onRefused);
    const { broker } = this.config;
    if (broker.password !== undefined) {
      this.source = 'configured';
      this.connection.start();
      return;
    }
    try {
      const stored = await readStoredCredentials(this.config.dataDir);
      if (stored) {
        this.source = 'stored';
        this.connection.start({ username: stored.username, password: stored.password });
        return;
      }
    } catch (err) {
      // Not claimed over: the control plane would refuse a device whose credentials were used.
      this.claimProblem = `stored credentials unusable: ${(err as Error).message}`;
      this.log.error({ err: (err as Error).message }, 'stored MQTT credentials unusable; not connecting');
      return;
    }
    if (broker.claimToken !== undefined) {
      this.source = 'claiming';
      this.claiming = this.claimUntilIssued(broker.claimToken);
      return;
    }
    this.log.warn('no MQTT credentials (broker.password, broker.passwordFile, broker.claimToken or broker.claimTokenFile): connecting without');
    this.connection.start();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.claiming;
    this.claiming = null;
    this.connection.off('refused', this.onRefused);
  }

  private async claimUntilIssued(claimToken: string): Promise<void> {
    const { deviceId, dataDir, broker } = this.config;
    const signal = this.abort.signal;
    const backoff = new JitteredBackoff(broker.reconnect.minMs, broker.reconnect.maxMs);
    this.log.info({ url: broker.url }, 'no MQTT credentials yet: claiming them with the claim token');
    while (!signal.aborted) {
      let delay: number;
      try {
        const answer = await claimCredentials(
          { url: broker.url, deviceId, claimToken, tls: broker.tls, connectTimeoutMs: broker.connectTimeoutMs, responseTimeoutMs: CLAIM_RESPONSE_TIMEOUT_MS },
          this.log,
          signal,
        );
        if (answer.status === 'issued') {
          const credentials = { username: answer.username, password: answer.password };
          // Stored before use: once used, the control plane would not issue them again.
          await writeStoredCredentials(dataDir, { ...credentials, issuedAt: answer.issuedAt });
          if (signal.aborted) return;
          this.claimProblem = null;
          this.source = 'claimed';
          this.log.info({ file: storedCredentialsPath(dataDir) }, 'claimed this device its own MQTT credentials');
          this.connection.start(credentials);
          return;
        }
        this.claimProblem = `claim refused (${answer.code}): ${answer.reason}`;
        this.log.error({ code: answer.code, reason: answer.reason }, 'the control plane refused the claim');
        delay = broker.reconnect.maxMs;
      } catch (err) {
        if (signal.aborted) return;
        const message = (err as Error).message;
        if (err instanceof ClaimUnanswered && err.refusedAtConnect) {
          this.claimProblem = `claim token refused by the broker: ${message}`;
          this.log.error({ err: message }, 'the broker refused the claim token: unknown to this control plane, or this device id is connected now');
          delay = broker.reconnect.maxMs;
        } else {
          this.claimProblem = `claim not answered: ${message}`;
          // Also when storing failed (a full disk): the credentials were not used, so claiming again is allowed.
          this.log.warn({ err: message }, 'claim failed; trying again');
          delay = backoff.next();
        }
      }
      await sleep(delay, undefined, { signal }).catch(() => undefined);
    }
  }

  private refused(reason: string): void {
    if (this.config.broker.claimToken !== undefined && (this.source === 'stored' || this.source === 'claimed')) {
      this.log.error(
        { reason, file: storedCredentialsPath(this.config.dataDir) },
        'the control plane refused this device\'s credentials: it may have been revoked. Not claiming again with the claim token; an operator issues new credentials, or forgets these and the file is removed',
      );
    } else {
      this.log.error({ reason, source: this.source }, 'the control plane refused this device\'s MQTT credentials');
    }
  }
}
