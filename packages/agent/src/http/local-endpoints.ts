import type { ResultSource } from '../events/detection-events.js';
import type { SnapshotStore } from '../events/snapshot-store.js';
import type { Logger } from '../log/logger.js';
import type { AgentMetrics, RuntimeView } from '../metrics/agent-metrics.js';
import { checkHealth, type ControlPlaneLink } from './health-check.js';
import type { HttpConfig } from './http-config.js';
import { LatestFrames } from './latest-frames.js';
import { LocalHttpServer } from './local-http-server.js';

export interface LocalEndpointsDeps {
  cameras: readonly { id: string; stallTimeoutMs: number }[];
  results: ResultSource;
  view: RuntimeView;
  metrics: AgentMetrics;
  snapshots: SnapshotStore | null;
  /** the agent's link to its control plane; absent in standalone mode */
  controlPlane?: () => ControlPlaneLink;
}

/** /healthz, /metrics and the snapshots, as one start()/stop() feature of the agent (or of standalone mode). */
export class LocalEndpoints {
  private readonly frames: LatestFrames;
  private readonly server: LocalHttpServer;

  constructor(config: Pick<HttpConfig, 'host' | 'port'>, deps: LocalEndpointsDeps, log: Logger) {
    this.frames = new LatestFrames(deps.results);
    const { view, metrics } = deps;
    this.server = new LocalHttpServer(
      config,
      {
        cameraIds: deps.cameras.map((c) => c.id),
        health: () =>
          checkHealth({
            ...view,
            cameras: deps.cameras,
            lastFrameAt: (id) => metrics.lastFrameAt(id),
            lastResultAt: (id) => metrics.lastResultAt(id),
            ...(deps.controlPlane ? { controlPlane: deps.controlPlane } : {}),
          }),
        metrics,
        frames: this.frames,
        snapshots: deps.snapshots,
        log,
      },
      log,
    );
  }

  get address(): { host: string; port: number } | null {
    return this.server.address;
  }

  /** Throws when the port cannot be bound. */
  async start(): Promise<void> {
    this.frames.start();
    try {
      await this.server.start();
    } catch (err) {
      this.frames.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.server.stop();
    this.frames.stop();
  }
}
