import { z } from 'zod';
import type { WebhookOptions } from './webhook-delivery.js';

/** A URL rollout events are POSTed to; with a secret, each request carries an HMAC-SHA256 signature. */
export const rolloutWebhookSchema = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    /** a file holding the shared secret (trimmed); relative to the config file */
    secretFile: z.string().min(1).optional(),
  })
  .strict();
export type RolloutWebhookConfig = z.infer<typeof rolloutWebhookSchema>;

/** How webhook deliveries are retried and when they are given up; they wait in SQLite, so a restart keeps them. */
export const webhookDeliverySchema = z
  .object({
    /** tries per delivery, the first included; counted across restarts */
    maxAttempts: z.number().int().positive().max(10_000).default(8),
    /** a delivery older than this is given up however few its tries */
    maxAgeSeconds: z.number().positive().default(24 * 3600),
    /** the first retry waits up to this long, each later one up to twice the one before (full jitter)... */
    retryBaseSeconds: z.number().positive().max(3600).default(1),
    /** ...but never more than this */
    retryMaxSeconds: z.number().positive().max(24 * 3600).default(60),
    /** a request not answered in this time is a failed try */
    timeoutSeconds: z.number().positive().max(300).default(10),
    /** deliveries waiting per webhook; the oldest are given up beyond */
    maxPending: z.number().int().positive().max(1_000_000).default(10_000),
  })
  .strict()
  .refine((d) => d.retryMaxSeconds >= d.retryBaseSeconds, { message: 'retryMaxSeconds must be at least retryBaseSeconds', path: ['retryMaxSeconds'] })
  .prefault({});
export type WebhookDeliveryConfig = z.infer<typeof webhookDeliverySchema>;

/** `rollouts:` in the control plane config. */
export const rolloutConfigSchema = z
  .object({
    /** how often the engine assigns devices, applies desired states and evaluates gates */
    tickSeconds: z.number().positive().max(300).default(5),
    webhooks: z
      .array(rolloutWebhookSchema)
      .max(16)
      // Each webhook's outbox is keyed by its URL.
      .refine((hooks) => new Set(hooks.map((h) => h.url)).size === hooks.length, { message: 'each webhook URL may be listed once' })
      .default([]),
    webhookDelivery: webhookDeliverySchema,
  })
  .strict()
  .prefault({});
export type RolloutConfig = z.infer<typeof rolloutConfigSchema>;

/** The delivery options a config means. */
export function webhookOptionsOf(c: WebhookDeliveryConfig): WebhookOptions {
  return {
    maxAttempts: c.maxAttempts,
    maxAgeMs: c.maxAgeSeconds * 1000,
    baseDelayMs: c.retryBaseSeconds * 1000,
    maxDelayMs: c.retryMaxSeconds * 1000,
    timeoutMs: c.timeoutSeconds * 1000,
    maxPending: c.maxPending,
  };
}
