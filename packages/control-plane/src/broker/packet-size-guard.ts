import type { Duplex } from 'node:stream';

/**
 * Follows the MQTT framing of one connection's incoming bytes (fixed header:
 * a type byte, then the remaining length as a 1-4 byte varint) and reports
 * the first packet whose header announces more than `maxBytes`. The packet
 * parser would otherwise buffer such a packet whole (up to 256 MB) before
 * any hook could look at it. Only headers are read; bodies are skipped.
 */
export class PacketSizeFraming {
  private phase: 'type' | 'length' | 'body' | 'off' = 'type';
  private length = 0;
  private multiplier = 1;
  private skip = 0;

  constructor(public maxBytes: number) {}

  /** The announced remaining length of the first packet over the limit in `chunk`, or -1. */
  feed(chunk: Buffer): number {
    let i = 0;
    while (i < chunk.length) {
      switch (this.phase) {
        case 'type':
          i++;
          this.phase = 'length';
          this.length = 0;
          this.multiplier = 1;
          break;
        case 'length': {
          const b = chunk[i++] as number;
          this.length += (b & 0x7f) * this.multiplier;
          // Later bytes only add: a partial length already over the limit is over it.
          if (this.length > this.maxBytes) return this.length;
          if (b & 0x80) {
            this.multiplier *= 128;
            // A fifth length byte is malformed; the parser refuses it, so stop following.
            if (this.multiplier > 128 ** 3) this.phase = 'off';
          } else {
            this.skip = this.length;
            this.phase = this.skip > 0 ? 'body' : 'type';
          }
          break;
        }
        case 'body': {
          const n = Math.min(this.skip, chunk.length - i);
          i += n;
          this.skip -= n;
          if (this.skip === 0) this.phase = 'type';
          break;
        }
        case 'off':
          return -1;
      }
    }
    return -1;
  }
}

/**
 * Watches `conn` as the broker reads it and destroys it at the first packet
 * over the framing's limit. Call after the broker attached its own reader:
 * read() emits each chunk as 'data' before the parser gets it, so this
 * copies nothing and leaves the stream in paused mode.
 */
export function guardPacketSize(conn: Duplex, maxBytes: number, onOversize: (announcedBytes: number) => void): PacketSizeFraming {
  const framing = new PacketSizeFraming(maxBytes);
  const watch = (chunk: Buffer): void => {
    const over = framing.feed(chunk);
    if (over < 0) return;
    conn.off('data', watch);
    onOversize(over);
    conn.destroy();
  };
  conn.on('data', watch);
  return framing;
}
