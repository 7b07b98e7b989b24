import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { allDevicesFilter, parseDeviceTopic, tufTargetOf, type DeviceTopicKind } from '@perch/shared';
import type { Hono } from 'hono';
import type { Logger } from 'pino';
import { registerAdminToken, resolveAdminToken, type AdminTokenSource } from './access/admin-token.js';
import { createApi } from './api/app.js';
import { ChunkServer } from './artifacts/chunk-server.js';
import type { BrokerPort } from './broker/broker-port.js';
import { EmbeddedBrokerPort } from './broker/embedded-broker-port.js';
import { ExternalBroker } from './broker/external-broker.js';
import { ControlPlaneBus } from './bus/control-plane-bus.js';
import { DeviceMessageDispatcher } from './bus/device-message-dispatcher.js';
import type { ControlPlaneConfig } from './config/control-plane-config.js';
import { DesiredStateService } from './desired-state/desired-state-service.js';
import { wantedBrokerIdentities } from './identity/broker-identities.js';
import { resolveDefaultClaimToken } from './identity/default-claim-token.js';
import { DeviceIdentityService, type IssuedCredentials, type LabelsInput } from './identity/device-identity-service.js';
import { provisionHandler } from './identity/provision-handler.js';
import { eventIngestHandler } from './ingest/event-ingest.js';
import { reportedStateHandler } from './ingest/reported-state-handler.js';
import { statusHandler } from './ingest/status-handler.js';
import type { TelemetryIngest } from './ingest/telemetry-ingest.js';
import { ArtifactStore } from './registry/artifact-store.js';
import { ModelRegistry } from './registry/model-registry.js';
import { ApiTokenStore } from './store/api-token-store.js';
import { AuditLogStore } from './store/audit-log-store.js';
import { BackupFolder } from './store/backup-folder.js';
import { openDatabase, type Db } from './store/database.js';
import { backupDatabase, controlPlaneDatabaseFile, type BackupResult } from './store/database-backup.js';
import { DesiredStateStore } from './store/desired-state-store.js';
import { DeviceListing } from './store/device-listing.js';
import { DeviceStore } from './store/device-store.js';
import { ModelVersionPages } from './store/model-version-pages.js';
import { ModelVersionStore } from './store/model-version-store.js';
import { TelemetryStore } from './store/telemetry-store.js';
import { RolloutFeature } from './rollouts/rollout-feature.js';
import { FleetTelemetryFeature } from './telemetry/fleet-telemetry-feature.js';
import { MetadataServer } from './trust/metadata-server.js';
import { TufRepository, tufRepositoryPaths } from './trust/tuf-repository.js';

/** What agents keep in their outboxes until acknowledged: the kinds the embedded broker acknowledges only once committed. */
const DURABLE_DEVICE_KINDS: readonly DeviceTopicKind[] = ['telemetry', 'events'];

/** Everything that is up only between start() and stop(). */
interface Running {
  db: Db;
  broker: BrokerPort;
  bus: ControlPlaneBus;
  http: ServerType;
  ingest: TelemetryIngest;
  fleet: FleetTelemetryFeature;
  rollouts: RolloutFeature;
  dispatcher: DeviceMessageDispatcher;
  chunkServer: ChunkServer;
  api: Hono;
  devices: DeviceStore;
  versions: ModelVersionStore;
  telemetry: TelemetryStore;
  desired: DesiredStateService;
  registry: ModelRegistry;
  tuf: TufRepository;
  identity: DeviceIdentityService;
}

/**
 * One control plane process: SQLite store, the MQTT broker (embedded aedes,
 * or an external broker with `mqtt.external`), the control plane's own MQTT
 * client with one dispatcher for device messages, and the REST API. Started
 * and stopped as a whole.
 */
export class ControlPlane {
  private defaultClaimToken: string | null = null;
  private admin: AdminTokenSource | null = null;
  private running: Running | null = null;

  constructor(
    readonly config: ControlPlaneConfig,
    private readonly log: Logger,
  ) {}

  /** The default claim token (`devices.claimToken`, else `<dataDir>/secrets/claim-token`): a box configured with it claims its own credentials. Known once started. */
  get claimToken(): string {
    if (this.defaultClaimToken === null) throw new Error('control plane not started');
    return this.defaultClaimToken;
  }

  /** The first admin API token (`http.adminTokenFile`, else `<dataDir>/secrets/admin-token`), for `Authorization: Bearer`. Known once started. */
  get adminToken(): string {
    if (this.admin === null) throw new Error('control plane not started');
    return this.admin.secret;
  }

  /** The file the admin token is read from. Known once started. */
  get adminTokenFile(): string {
    if (this.admin === null) throw new Error('control plane not started');
    return this.admin.file;
  }

  /**
   * Operator provisioning: fresh credentials for a device (replacing old ones
   * and any revocation), tags and groups added. Resolves once the broker
   * accepts them: an external broker is told first, the embedded one asks at
   * CONNECT.
   */
  issueDeviceCredentials(deviceId: string, opts: LabelsInput = {}): Promise<IssuedCredentials> {
    return this.r.identity.issueCredentials(deviceId, opts);
  }

  /** The TUF root devices are provisioned with (the agent's `trust.rootFile`); the newest version. */
  trustedRoot(): Promise<Record<string, unknown>> {
    return this.r.tuf.currentRoot();
  }

  private get r(): Running {
    if (!this.running) throw new Error('control plane not started');
    return this.running;
  }

  /** The embedded broker's plain MQTT port; there is none with `mqtt.external`. */
  get mqttPort(): number {
    const port = this.r.broker.mqttPort;
    if (port === null) throw new Error(`no embedded broker: devices connect to the external broker (${this.config.mqtt.external?.url ?? '?'})`);
    return port;
  }

  /** The MQTT-over-TLS port devices connect to, or null without `mqtt.tls` (then `mqttPort` is theirs) or with `mqtt.external`. */
  get mqttTlsPort(): number | null {
    return this.r.broker.mqttTlsPort;
  }

  get httpPort(): number {
    return (this.r.http.address() as AddressInfo).port;
  }

  get db(): Db {
    return this.r.db;
  }

  get stats() {
    const r = this.r;
    return { dispatch: r.dispatcher.stats, telemetry: r.ingest.stats, intake: r.broker.intakeStats, chunks: r.chunkServer.stats, mqttClients: r.broker.connectedClients, broker: r.broker.stats };
  }

  get services() {
    const r = this.r;
    return { devices: r.devices, versions: r.versions, telemetry: r.telemetry, ingest: r.ingest, desired: r.desired, registry: r.registry, api: r.api, bus: r.bus, identity: r.identity, fleet: r.fleet, rollouts: r.rollouts };
  }

  /** An online backup of the database into `file` (a new file): a consistent copy while ingest goes on. */
  backup(file: string): Promise<BackupResult> {
    return backupDatabase(this.r.db, file);
  }

  async start(): Promise<void> {
    if (this.running) return;
    const { config, log } = this;
    // Before anything is opened: a bad admin token file stops the start with nothing to clean up.
    const admin = await resolveAdminToken(config.http.adminTokenFile, join(config.dataDir, 'secrets', 'admin-token'));
    // First: a repository that cannot be opened stops the start before anything listens.
    const tuf = new TufRepository({ ...tufRepositoryPaths(config.dataDir), log: log.child({ part: 'tuf' }) });
    await tuf.open();
    const db = openDatabase(controlPlaneDatabaseFile(config.dataDir));
    const devices = new DeviceStore(db);
    const versions = new ModelVersionStore(db);
    await tuf.addMissingTargets(versions.all().map((v) => tufTargetOf(v.target)));
    const telemetry = new TelemetryStore(db);
    const artifacts = new ArtifactStore(join(config.dataDir, 'artifacts'));
    const registry = new ModelRegistry(versions, artifacts, tuf);
    const tokens = new ApiTokenStore(db);
    registerAdminToken(tokens, admin, log.child({ part: 'access' }));
    const claimToken = await resolveDefaultClaimToken(config.devices, join(config.dataDir, 'secrets', 'claim-token'));
    // An external broker before the identity service, which tells it of every change; one that refuses the control plane stops the start here.
    const external = config.mqtt.external ? await ExternalBroker.connect(config.mqtt.external, config.dataDir, log.child({ part: 'broker' })) : null;
    const identity: DeviceIdentityService = new DeviceIdentityService(
      db,
      devices,
      log.child({ part: 'identity' }),
      external?.access
        ? { broker: external.access }
        : // The embedded broker is made next; sessions are only ended once it runs.
          { endSession: (deviceId): Promise<boolean> => broker.endSession?.(deviceId) ?? Promise.resolve(false) },
    );
    identity.ensureDefaultClaimToken(claimToken);
    // Revocations, forgotten credentials and expired tokens the broker missed (it was down, or this process stopped between the two).
    await external?.reconcile(wantedBrokerIdentities(identity, claimToken), log.child({ part: 'broker' })).catch(async (err: unknown) => {
      // Its admin client would otherwise keep reconnecting, and the process alive.
      await external.stop();
      throw err;
    });
    const broker: BrokerPort =
      external ?? (await EmbeddedBrokerPort.start({ host: config.mqtt.host, port: config.mqtt.port, limits: config.mqtt.limits, tls: config.mqtt.tls, devices: identity }, log.child({ part: 'broker' })));

    const bus = new ControlPlaneBus(broker.busOptions, log.child({ part: 'bus' }));
    const desired = new DesiredStateService(new DesiredStateStore(db), devices, versions, bus, () => tuf.desiredSigners(), log.child({ part: 'desired-state' }));
    const fleet = new FleetTelemetryFeature(db, telemetry, config.telemetry, broker, log.child({ part: 'telemetry' }));
    const ingest = fleet.ingest;
    const rollouts = new RolloutFeature(config.rollouts, { db, devices, versions, desired, publish: (topic, payload) => bus.publish(topic, payload, { qos: 1 }), log: log.child({ part: 'rollouts' }) });
    // Inside the embedded broker (embedded-broker-port.ts says why), through the bus to an external one.
    const chunkServer = new ChunkServer(artifacts, versions, broker.chunkPublisher(bus), log.child({ part: 'artifacts' }), {
      perDevice: config.artifacts.maxBytesPerSecondPerDevice,
      total: config.artifacts.maxBytesPerSecondTotal,
    });
    const dispatcher = new DeviceMessageDispatcher(log.child({ part: 'dispatch' }))
      .register(statusHandler(devices, log.child({ part: 'devices' })))
      .register(reportedStateHandler(devices, log.child({ part: 'devices' })))
      .register(ingest.handler())
      .register(eventIngestHandler(db))
      .register(chunkServer.handler())
      .register(new MetadataServer(tuf, bus, log.child({ part: 'tuf' })).handler())
      .register(provisionHandler(identity, bus));
    // Windows and events, the data devices keep in their outboxes: acknowledged only once committed, where the broker can
    // (embedded, device-intake.ts); the bus hears the rest. A rejection there is logged and counted by the dispatcher.
    const taken = broker.takeDeviceMessages(DURABLE_DEVICE_KINDS, (device, topic, payload) => dispatcher.dispatchParsed(device, topic, payload, false));
    bus.onMessage((topic, payload) => void dispatcher.dispatch(topic, payload)?.catch(() => undefined));
    // A device heard from (perhaps for the first time) may fall in a rollout's target: the engine looks soon.
    bus.onMessage((topic) => {
      if (parseDeviceTopic(topic)?.kind === 'status') rollouts.engine.nudge();
    });
    bus.onConnect(() => {
      desired.republishAll().catch((err: unknown) => log.error({ err }, 'republishing desired states failed'));
    });
    await bus.start(dispatcher.kinds().filter((k) => !taken.includes(k)).map(allDevicesFilter));
    broker.openForDevices();

    const metrics = fleet.createMetrics({ dispatch: () => dispatcher.stats, databaseFile: controlPlaneDatabaseFile(config.dataDir), brokerStats: broker.kind === 'embedded' ? () => broker.stats : undefined, rolloutWebhooks: () => rollouts.webhooks.stats });
    const api = createApi({ log: log.child({ part: 'api' }), fleetTelemetry: fleet.view, rollouts, metrics, registry, versions, artifacts, devices, desired, telemetry, tuf, identity, deviceListing: new DeviceListing(db), modelPages: new ModelVersionPages(db), tokens, audit: new AuditLogStore(db), backups: new BackupFolder(join(config.dataDir, 'backups'), (file) => this.backup(file), { keep: config.backup.keep }) }, { maxUploadBytes: config.http.maxUploadBytes, metricsAuth: config.http.metricsAuth });
    const http = await new Promise<ServerType>((resolve, reject) => {
      const server = serve({ fetch: api.fetch, hostname: config.http.host, port: config.http.port }, () => resolve(server));
      server.once('error', reject);
    });
    tuf.start();
    fleet.start();
    rollouts.start();
    this.defaultClaimToken = claimToken;
    this.admin = admin;
    this.running = { db, broker, bus, http, ingest, dispatcher, chunkServer, api, devices, versions, telemetry, desired, registry, tuf, identity, fleet, rollouts };
    log.info({ http: this.httpPort, mqtt: broker.mqttPort ?? config.mqtt.external?.url, dataDir: config.dataDir }, 'control plane started');
  }

  async stop(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.running = null;
    // First: a tick under way may still issue desired states over the bus.
    await r.rollouts.stop();
    // Before the broker goes: the sweeper would find every device disconnected.
    await r.fleet.stop();
    await new Promise<void>((resolve) => r.http.close(() => resolve()));
    // Devices first (embedded): after this nothing new is acknowledged that the bus might miss.
    // An external broker queues for the bus's persistent session instead.
    await r.broker.quiesce();
    await r.bus.stop();
    await r.broker.stop();
    // Last, so it holds everything either path delivered: what the intake took (its devices are gone,
    // unacknowledged; they send it again and the duplicate is a no-op) and what the bus heard.
    await r.ingest.stop();
    r.chunkServer.close();
    await r.tuf.stop();
    r.db.close();
    this.log.info('control plane stopped');
  }
}
