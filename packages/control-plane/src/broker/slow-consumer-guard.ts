import type { Duplex } from 'node:stream';
import type { Client } from 'aedes';

export interface SlowConsumerLimits {
  /** bytes the broker may hold for one client that has not read them yet */
  maxOutgoingBytes: number;
  /** how long a client's socket may stay full before the broker gives up on it */
  drainTimeoutMs: number;
}

/**
 * Above what one device may have in flight on a healthy link: the chunk
 * server's 8 MiB of frames, a large TUF metadata file, its desired state.
 * The drain timeout is aedes's own default.
 */
export const DEFAULT_SLOW_CONSUMER: SlowConsumerLimits = { maxOutgoingBytes: 32 * 1024 * 1024, drainTimeoutMs: 60_000 };

type DrainCallback = (err: Error | null, client: Client) => void;

/** The part of aedes's Client this replaces (lib/client.js; called from lib/write.js when a write returns false). */
interface DrainingClient {
  conn: Duplex;
  waitForDrain(callback: DrainCallback): void;
}

/**
 * aedes holds each delivery until the subscriber's socket drains. While it
 * waits, the message keeps one of the router's slots (mqemitter: 100 in
 * flight for the whole broker) and the publisher's socket is not read, so a
 * subscriber that stops reading stalls delivery to everyone until aedes's
 * drainTimeout ends it. For `client`, this makes a delivery done as soon as
 * it is in the client's socket buffer, bounds that buffer by
 * `maxOutgoingBytes`, and closes a connection whose buffer does not drain
 * within `drainTimeoutMs`. Bytes already buffered are the only cost a slow
 * client puts on the others.
 */
export function guardSlowConsumer(client: Client, limits: SlowConsumerLimits, onSlow: (reason: 'buffer-full' | 'drain-timeout', bufferedBytes: number) => void): void {
  const c = client as unknown as DrainingClient;
  const conn = c.conn;
  let timer: NodeJS.Timeout | null = null;
  const drained = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  const cut = (reason: 'buffer-full' | 'drain-timeout'): void => {
    drained();
    conn.off('drain', drained);
    if (conn.destroyed) return;
    onSlow(reason, conn.writableLength);
    conn.destroy();
  };
  c.waitForDrain = (callback) => {
    if (conn.writableLength > limits.maxOutgoingBytes) cut('buffer-full');
    else if (!timer) {
      timer = setTimeout(() => cut('drain-timeout'), limits.drainTimeoutMs);
      timer.unref();
      conn.once('drain', drained);
    }
    setImmediate(callback, null, client);
  };
  conn.once('close', drained);
}
