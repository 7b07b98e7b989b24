/** What bench/delivery.ts asks of its client process (delivery-client.ts), and what it reports back. */
import { sha256Schema } from '@perch/shared';
import { z } from 'zod';

export const deliveryClientSpecSchema = z.object({
  mode: z.enum(['mqtt', 'http']),
  clients: z.number().int().min(1).max(500),
  /** where part files go (deleted at the end) */
  dir: z.string().min(1),
  mqttUrl: z.string().min(1),
  /** client i logs in as `${deviceIdPrefix}-${i}` with passwords[i] (at least `clients` of them) */
  passwords: z.array(z.string().min(1)).min(1),
  apiUrl: z.string().min(1),
  /** the file holding the API token for the HTTP baseline's GETs (a path, so the secret stays off the command line) */
  apiTokenFile: z.string().min(1),
  deviceIdPrefix: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$/),
  sha256: sha256Schema,
  length: z.number().int().positive(),
  /** null: fixed-size chunks of `chunkBytes` checked against the answers' own hashes */
  chunkManifest: z.object({ sha256: sha256Schema, length: z.number().int().positive() }).nullable(),
  chunkBytes: z.number().int().positive(),
  window: z.number().int().min(1).max(64),
});
export type DeliveryClientSpec = z.infer<typeof deliveryClientSpecSchema>;

export const deliveryClientResultSchema = z.object({
  /** from the first request to the last byte of the last client */
  wallMs: z.number().nonnegative(),
  /** each client's own time */
  clientMs: z.array(z.number().nonnegative()),
  bytes: z.number().int().nonnegative(),
  badChunks: z.number().int().nonnegative(),
});
export type DeliveryClientResult = z.infer<typeof deliveryClientResultSchema>;

