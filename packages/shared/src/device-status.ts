import { z } from 'zod';
import { deviceIdSchema } from './topics.js';

/**
 * Online/offline, retained on the device's `status` topic. The agent sets an
 * `offline` will message at connect, so the broker announces a lost device.
 */
export const deviceStatusSchema = z.object({
  deviceId: deviceIdSchema,
  state: z.enum(['online', 'offline']),
  /** why the device went offline: 'shutdown' when it said goodbye, 'connection-lost' from the will */
  reason: z.enum(['shutdown', 'connection-lost']).optional(),
  agentVersion: z.string().max(64).optional(),
  /** device clock at connect, ms since epoch */
  since: z.number().int().nonnegative(),
});
export type DeviceStatus = z.infer<typeof deviceStatusSchema>;
