import { deviceTopic, encodeJson, MAX_METADATA_BYTES, metadataRequestSchema, metadataResponseSchema, type MetadataRequest, type MetadataResponse } from '@perch/shared';
import type { Logger } from 'pino';
import { defineHandler } from '../bus/device-message-dispatcher.js';
import type { ControlPlaneBus } from '../bus/control-plane-bus.js';

/** Where served files come from: the TUF repository, by file name; null when there is no such file. */
export interface MetadataSource {
  readFile(name: string): Promise<Buffer | null>;
}

/**
 * Answers a device's TUF metadata request with the file, exactly as stored,
 * on that device's own `metadata/response` topic. A file the repository does
 * not have is a 404, which is how a device's root walk learns it has the
 * latest root. Requests that fail the schema (bad JSON, a name that is not a
 * metadata file) are logged and dropped by the dispatcher before they get here.
 */
export class MetadataServer {
  readonly stats = { served: 0, notFound: 0, errors: 0 };

  constructor(
    private readonly source: MetadataSource,
    private readonly bus: Pick<ControlPlaneBus, 'publish'>,
    private readonly log: Logger,
  ) {}

  handler() {
    return defineHandler({
      kind: 'metadata/request',
      schema: metadataRequestSchema,
      handle: (deviceId, req) => this.serve(deviceId, req),
    });
  }

  async serve(deviceId: string, req: MetadataRequest): Promise<void> {
    const response = metadataResponseSchema.parse(await this.answer(deviceId, req));
    await this.bus.publish(deviceTopic(deviceId, 'metadata/response'), encodeJson(response), { qos: 1 });
  }

  private async answer(deviceId: string, req: MetadataRequest): Promise<MetadataResponse> {
    const { requestId, name } = req;
    const fail = (status: 404 | 500, error: string): MetadataResponse => {
      if (status === 404) this.stats.notFound++;
      else this.stats.errors++;
      this.log[status === 404 ? 'debug' : 'error']({ deviceId, name, status }, error);
      return { requestId, name, status, error };
    };
    let bytes: Buffer | null;
    try {
      bytes = await this.source.readFile(name);
    } catch (err) {
      this.log.error({ deviceId, name, err: (err as Error).message }, 'reading TUF metadata failed');
      return fail(500, `reading ${name} failed`);
    }
    if (!bytes) return fail(404, `no ${name} in the repository`);
    if (bytes.length > MAX_METADATA_BYTES) return fail(500, `${name} is ${bytes.length} bytes, over the ${MAX_METADATA_BYTES} that can be served`);
    const body = bytes.toString('utf8');
    // The device hashes the bytes it gets: the body must carry these bytes exactly.
    if (!Buffer.from(body, 'utf8').equals(bytes)) return fail(500, `${name} is not valid UTF-8`);
    this.stats.served++;
    return { requestId, name, status: 200, body };
  }
}
