import { Agent } from '../agent.js';
import { resolveAgentConfig } from '../config/agent-config.js';
import { ControlPlaneDouble } from './control-plane-double.js';
import { DeviceObserver } from './device-observer.js';
import { CapturedLog, tempDir } from './harness.js';
import { startBroker, type TestBroker } from './mqtt-broker.js';

/**
 * One device's world for an agent test: a real broker with credentials for
 * the device, the control plane double (its TUF repository included) and an
 * observer of the device's topics; `startAgent` runs a real agent in it.
 */
export class DeviceSite {
  agent: Agent | null = null;

  private constructor(
    readonly deviceId: string,
    readonly broker: TestBroker,
    readonly cp: ControlPlaneDouble,
    readonly observer: DeviceObserver,
    readonly dir: { path: string; remove(): Promise<void> },
    private readonly password: string,
  ) {}

  /** `configure` runs before the double starts (e.g. to set its repository's clock). */
  static async start(deviceId: string, configure: (cp: ControlPlaneDouble) => void = () => undefined): Promise<DeviceSite> {
    const credentials: Record<string, string> = { [deviceId]: 'device', 'control-plane-double': 'cp', [`observer-${deviceId}`]: 'observer' };
    const broker = await startBroker({ credentials });
    const cp = new ControlPlaneDouble(broker.url, { username: 'control-plane-double', password: 'cp' });
    configure(cp);
    await cp.start();
    const observer = new DeviceObserver(broker.url, deviceId, { username: `observer-${deviceId}`, password: 'observer' });
    await observer.start();
    return new DeviceSite(deviceId, broker, cp, observer, await tempDir(), 'device');
  }

  /** A real agent of this device; `config` adds to (and may override) the broker and trust settings. */
  async startAgent(config: Record<string, unknown>, logLevel: 'info' | 'debug' | 'warn' = 'warn'): Promise<Agent> {
    const resolved = await resolveAgentConfig(
      {
        deviceId: this.deviceId,
        dataDir: this.deviceId,
        broker: { url: this.broker.url, password: this.password, reconnect: { minMs: 50, maxMs: 500 } },
        trust: { rootFile: this.cp.rootFile },
        events: { enabled: false },
        http: { enabled: false },
        ...config,
      },
      this.dir.path,
    );
    this.agent = new Agent(resolved, new CapturedLog(logLevel).logger);
    await this.agent.start();
    return this.agent;
  }

  async stop(): Promise<void> {
    await this.agent?.stop();
    await this.observer.stop();
    await this.cp.stop();
    await this.broker.close();
    await this.dir.remove();
  }
}
