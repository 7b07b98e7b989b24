import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceTopicKind } from '@perch/shared';
import type { Logger } from 'pino';
import type { ChunkPublisher } from '../artifacts/chunk-server.js';
import type { BusOptions } from '../bus/control-plane-bus.js';
import { readSecretFile, type ControlPlaneConfig } from '../config/control-plane-config.js';
import { zeroCounts } from './broker-limits.js';
import type { BrokerPort } from './broker-port.js';
import type { EmbeddedBrokerStats } from './embedded-broker.js';
import { resolveExternalClientId } from './external-client-id.js';
import { MosquittoBrokerAccess } from './mosquitto-broker-access.js';
import { DynsecClient } from './mosquitto-dynsec.js';
import { reconcileMosquitto, type ReconcileReport, type WantedIdentities } from './mosquitto-reconcile.js';

export type ExternalBrokerConfig = NonNullable<ControlPlaneConfig['mqtt']['external']>;

/** The group `mqtt.external.shared` subscribes through. */
export const SHARED_SUBSCRIPTION_GROUP = 'perch-cp';

/**
 * An external broker (Mosquitto 2) as the control plane's broker. The
 * control plane is one of its clients: the bus with a persistent session
 * under a stable secret client id, so what devices publish while it is away
 * waits in the broker; and, with `dynsec`, an admin connection of its own
 * (clean, MQTT 5) for the dynamic security API, over which every device
 * credential and claim token is added or removed as it changes. What the
 * embedded broker did itself degrades: a revocation ends a session through
 * the broker's own revocation, presence is decided by silence alone, and
 * there are no client counts or limit statistics here (the broker has its own).
 */
export class ExternalBroker implements BrokerPort {
  readonly kind = 'external';
  readonly mqttPort = null;
  readonly mqttTlsPort = null;
  readonly connectedClients = 0;
  readonly endSession = undefined;
  /** told of every identity change; null without `dynsec` */
  readonly access: MosquittoBrokerAccess | null;

  private constructor(
    readonly busOptions: BusOptions,
    private readonly dynsec: DynsecClient | null,
  ) {
    this.access = dynsec ? new MosquittoBrokerAccess(dynsec) : null;
  }

  /** Reads the secrets and, with `dynsec`, connects the admin client: a broker that refuses it stops the start. */
  static async connect(config: ExternalBrokerConfig, dataDir: string, log: Logger): Promise<ExternalBroker> {
    const password = readSecretFile(config.passwordFile);
    const tls = {
      ...(config.caFile === undefined ? {} : { ca: readFileSync(config.caFile) }),
      ...(config.certFile === undefined || config.keyFile === undefined ? {} : { cert: readFileSync(config.certFile), key: readFileSync(config.keyFile) }),
    };
    const clientId = await resolveExternalClientId(config.clientId, join(dataDir, 'secrets', 'mqtt-client-id'));
    const busOptions: BusOptions = {
      url: config.url,
      username: config.username,
      password,
      clientId,
      clean: false,
      tls,
      sharedGroup: config.shared ? SHARED_SUBSCRIPTION_GROUP : undefined,
    };
    let dynsec: DynsecClient | null = null;
    if (config.dynsec) {
      // A client id of its own, as secret as the bus's: two connections with one id take it from each other.
      dynsec = await DynsecClient.connect(
        config.url,
        { username: config.username, password, clientId: `${clientId}.admin`, connectTimeout: 10_000, ...tls },
        { onInvalidResponse: (details) => log.warn({ details }, 'dynamic security: a message on the response topic that is not an answer') },
      );
    }
    log.info({ url: config.url, dynsec: config.dynsec, shared: config.shared }, 'using an external MQTT broker');
    return new ExternalBroker(busOptions, dynsec);
  }

  get stats(): EmbeddedBrokerStats {
    return { connectedClients: 0, ...zeroCounts(), clients: {} };
  }

  /** Unknown here: the presence sweeper goes by silence alone. */
  isConnected(): boolean {
    return false;
  }

  /** Frames go through the bus: the broker is another process. */
  chunkPublisher(bus: ChunkPublisher): ChunkPublisher {
    return bus;
  }

  /** Brings the broker's clients in line with the database (mosquitto-reconcile.ts); null without `dynsec`. */
  async reconcile(want: WantedIdentities, log: Logger): Promise<ReconcileReport | null> {
    if (!this.dynsec || !this.access) return null;
    return reconcileMosquitto(this.dynsec, this.access, want, log);
  }

  /**
   * None: the broker acknowledges a device's publish on receipt and queues
   * it for the bus's persistent session, which the bus acknowledges on
   * receipt too; what is between that and a commit is written at shutdown.
   */
  takeDeviceMessages(): readonly DeviceTopicKind[] {
    return [];
  }

  readonly intakeStats = null;

  /** Nothing to open: the broker queues what devices publish for the bus's persistent session. */
  openForDevices(): void {}

  /** Nothing to hold back: the broker outlives the control plane and queues for its session. */
  async quiesce(): Promise<void> {}

  async stop(): Promise<void> {
    await this.dynsec?.close();
  }
}
